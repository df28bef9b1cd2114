"""Loading the images to pseudo-label: a missing and a corrupt file are told apart."""
import re

import pytest

from mmseg_saot.engine.pseudo_labels import PseudoLabelInputError
from mmseg_saot.engine.pseudo_labels.features import load_item


class Unreadable:
    """``dataset[i]`` fails as MMCV's loader does; ``get_data_info`` names the files."""

    def __init__(self, img_path):
        self.img_path = img_path

    def __getitem__(self, index):
        raise OSError('cannot decode')

    def get_data_info(self, index):
        return dict(img_path=self.img_path, seg_map_path=None)


def test_a_missing_file_is_said_to_be_missing_not_corrupt(tmp_path):
    listed = str(tmp_path / 'JPEGImages' / 'img99.jpg')
    with pytest.raises(PseudoLabelInputError, match=f'{listed} does not exist: add it, or '
                       'remove its name from the split file'):
        load_item(Unreadable(listed), 0)
    corrupt = tmp_path / 'img0.jpg'
    corrupt.write_bytes(b'garbage')
    with pytest.raises(PseudoLabelInputError, match='Replace or delete the corrupt file'):
        load_item(Unreadable(str(corrupt)), 0)


def test_a_source_label_out_of_range_names_its_file():
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    from mmseg_saot.engine.pseudo_labels.features import _patch_labels_of
    sample = SegDataSample(metainfo=dict(img_path='/data/src/a.png',
                                         seg_map_path='/data/src/a_labels.png'))
    sample.gt_sem_seg = PixelData(data=torch.full((1, 28, 28), 10))
    with pytest.raises(PseudoLabelInputError, match=r'^/data/src/a_labels.png: label value 10 '
                       r'is neither a class in \[0, 5\) nor ignore_index=255.*check_data.py'):
        _patch_labels_of(sample, None, (2, 2), 14, num_classes=5, ignore_index=255)


@pytest.mark.parametrize('meta, named', [
    (dict(flip=True, flip_direction='vertical'), 'flips it (vertical)'),
    (dict(img_shape=(40, 40)), "gives 40x40, not the file's 56x84 scaled by 1x1 (a crop?)")])
def test_a_target_pipeline_that_flips_or_crops_is_refused(meta, named):
    # labels are mapped back to the file by undoing a resize only: a flip wrote them
    # flipped (agreement with the truth fell from 0.91 to 0.24), a crop stretched
    from mmseg.structures import SegDataSample

    from mmseg_saot.engine.pseudo_labels.features import check_file_geometry
    resized = dict(img_path='a.png', ori_shape=(56, 84), img_shape=(112, 168),
                   scale_factor=(2.0, 2.0), flip=False)
    check_file_geometry(SegDataSample(metainfo=resized))  # a resize: fine
    plain = dict(img_path='a.png', ori_shape=(56, 84), img_shape=(56, 84), flip=False)
    with pytest.raises(PseudoLabelInputError, match=re.escape(
            f'a.png: the target labelling pipeline {named}. Pseudo-labels are written at '
            "the file's size by undoing a resize only")):
        check_file_geometry(SegDataSample(metainfo=dict(plain, **meta)))


def test_a_pipeline_without_pack_seg_inputs_is_named_with_the_fix(tmp_path):
    # the labelling stage failed with KeyError: 'inputs' deep in the batching code
    import numpy as np
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS
    from PIL import Image
    (tmp_path / 'img').mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img' / 'a.png')
    init_default_scope('mmseg')
    dataset = DATASETS.build(dict(
        type='BaseSegDataset', data_root=str(tmp_path), data_prefix=dict(img_path='img'),
        img_suffix='.png', metainfo=dict(classes=('a', 'b')),
        pipeline=[dict(type='LoadImageFromFile')]))
    path = re.escape(str(tmp_path / 'img' / 'a.png'))
    with pytest.raises(PseudoLabelInputError, match=(
            f'{path}: the pipeline of its dataset gave a dict of .*img_path.*, not a packed '
            r"sample: end that pipeline with dict\(type='PackSegInputs'\)")):
        load_item(dataset, 0)


def test_a_colour_or_16_bit_source_label_map_names_its_file(tmp_path):
    # An RGB label map (packed (H, W, 3)) made every patch ignore and its image left the
    # bank without a word; a 16-bit one had its values wrapped to other classes by
    # MMSeg's uint8 cast (269 -> 13).
    import numpy as np
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    from PIL import Image

    from mmseg_saot.engine.pseudo_labels.features import _patch_labels_of
    rgb = SegDataSample(metainfo=dict(img_path='/data/a.png', seg_map_path='/data/a_rgb.png'))
    rgb.gt_sem_seg = PixelData(data=torch.zeros(28, 28, 3, dtype=torch.long))
    with pytest.raises(PseudoLabelInputError, match=re.escape(
            '/data/a_rgb.png: the label map loads as (28, 28, 3), not one channel of class '
            'ids')):
        _patch_labels_of(rgb, None, (2, 2), 14, num_classes=19, ignore_index=255)
    wide = np.full((28, 28), 269, dtype=np.uint16)
    Image.fromarray(wide).save(tmp_path / 'b.png')
    sample = SegDataSample(metainfo=dict(img_path='/data/b.png',
                                         seg_map_path=str(tmp_path / 'b.png')))
    sample.gt_sem_seg = PixelData(data=torch.full((1, 28, 28), 269 % 256))
    with pytest.raises(PseudoLabelInputError, match=re.escape(
            f'{tmp_path / "b.png"}: values up to 269 (a 16-bit label map)')):
        _patch_labels_of(sample, None, (2, 2), 14, num_classes=19, ignore_index=255)
    Image.fromarray(np.full((28, 28), 12, dtype=np.uint16)).save(tmp_path / 'c.png')
    sample.set_metainfo(dict(seg_map_path=str(tmp_path / 'c.png')))  # 16-bit, values < 256
    sample.gt_sem_seg = PixelData(data=torch.full((1, 28, 28), 12))
    assert bool((_patch_labels_of(sample, None, (2, 2), 14, num_classes=19,
                                  ignore_index=255) == 12).all())
