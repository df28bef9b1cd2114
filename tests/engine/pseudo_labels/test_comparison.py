"""The comparison's output folder (one run's table and overlays, earlier ones kept), and
what it says of target ground truth it cannot score."""
import os
import os.path as osp
import re
import tempfile
from types import SimpleNamespace

import pytest

from mmseg_saot.engine.pseudo_labels.comparison import set_aside_earlier_outputs


def test_an_earlier_table_and_its_overlays_are_moved_aside_not_mixed(tmp_path):
    assert set_aside_earlier_outputs(str(tmp_path)) is None  # a new folder: nothing to move
    (tmp_path / 'pseudo_label_miou.json').write_text('{"methods": {"saot": {}}}')
    (tmp_path / 'overlays' / 'saot').mkdir(parents=True)
    (tmp_path / 'overlays' / 'saot' / 'a.png').write_bytes(b'png')
    (tmp_path / 'notes.txt').write_text('mine')  # not the tool's: left alone
    os.utime(tmp_path / 'pseudo_label_miou.json', (10**9, 10**9))  # 2001-09-09 UTC
    earlier = set_aside_earlier_outputs(str(tmp_path))
    assert os.path.basename(earlier).startswith('earlier-2001')
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(earlier), 'notes.txt']
    assert (tmp_path / earlier / 'overlays' / 'saot' / 'a.png').read_bytes() == b'png'
    (tmp_path / 'pseudo_label_miou.json').write_text('{}')
    os.utime(tmp_path / 'pseudo_label_miou.json', (10**9, 10**9))  # same second: a new folder
    again = set_aside_earlier_outputs(str(tmp_path))
    assert again == f'{earlier}.1' and (tmp_path / again / 'pseudo_label_miou.json').exists()


def test_ground_truth_is_decoded_as_the_dataset_decodes_it(tmp_path):
    # a reduce_zero_label dataset (0 = ignore, class c stored as c + 1) was scored as
    # stored: every class off by one, mIoU 0 in the review's run
    import numpy as np
    from PIL import Image

    from mmseg_saot.engine.pseudo_labels.comparison import _label_encoding, _read_gt
    path = tmp_path / 'gt.png'
    Image.fromarray(np.array([[0, 1, 2, 255]] * 2, np.uint8)).save(path)
    assert _read_gt(str(path)).tolist() == [[0, 1, 2, 255]] * 2
    encoding = _label_encoding(dict(reduce_zero_label=True, label_map=None))
    assert _read_gt(str(path), *encoding).tolist() == [[255, 0, 1, 255]] * 2
    mapped = _label_encoding(dict(reduce_zero_label=False, label_map={1: 0, 2: 1}))
    assert _read_gt(str(path), *mapped).tolist() == [[0, 0, 1, 255]] * 2


class _Targets:
    """What missing_ground_truth reads of a PseudoLabelDataset: item infos and the
    wrapped dataset's data_prefix and seg_map_suffix."""

    def __init__(self, infos, seg_dir, suffix='_gt.png'):
        self.infos = infos
        self.target = SimpleNamespace(data_prefix=dict(seg_map_path=seg_dir),
                                      seg_map_suffix=suffix)

    def __len__(self):
        return len(self.infos)

    def get_data_info(self, index):
        return self.infos[index]


def test_label_maps_under_another_suffix_are_named_with_the_option():
    # "no label maps under ann/" while the folder held them: the suffix was wrong
    from mmseg_saot.engine.pseudo_labels.comparison import missing_ground_truth
    with tempfile.TemporaryDirectory() as root:
        open(osp.join(root, 'a.png'), 'wb').close()
        targets = _Targets([dict(img_path=osp.join(root, 'a.jpg'),
                                 gt_seg_map_path=osp.join(root, 'a_gt.png'))], root)
        assert missing_ground_truth(targets) == (
            f'the target images have no ground truth: {root} holds files, but none named as '
            f"the images with seg_map_suffix='_gt.png' (the first expected: {root}/a_gt.png); "
            'check seg_map_suffix')


def test_a_split_file_name_without_an_image_is_named_as_such():
    # it was blamed on the label map, whose fix ("give every image its label map") was wrong
    from mmseg_saot.engine.pseudo_labels.comparison import missing_ground_truth
    from mmseg_saot.engine.pseudo_labels.features import PseudoLabelInputError
    with tempfile.TemporaryDirectory() as root:
        for name in ('t0.jpg', 't0.png'):
            open(osp.join(root, name), 'wb').close()
        targets = _Targets([dict(img_path=osp.join(root, f't{i}.jpg'),
                                 gt_seg_map_path=osp.join(root, f't{i}.png')) for i in (0, 9)],
                           root, '.png')
        with pytest.raises(PseudoLabelInputError, match=re.escape(
                f'the target image {root}/t9.jpg does not exist (nor its label map): remove '
                'it from the split file (ann_file), or add the image.')):
            missing_ground_truth(targets)
