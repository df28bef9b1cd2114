"""What identifies a pseudo-label cache: file checksums and the changed entries."""
import os
import shutil

import pytest
import torch
from torch.utils.data import Dataset

from mmseg_saot.datasets.pseudo_label_cache import changed_entries
from mmseg_saot.engine.pseudo_labels.fingerprint import (dataset_files, files_checksum,
                                                         make_fingerprint)


def test_files_checksum_follows_size_and_modification_time(tmp_path):
    path = tmp_path / 'a.png'
    path.write_bytes(b'12345')
    first = files_checksum([str(path), None])
    assert files_checksum([str(path), None]) == first  # nothing read changes it
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    touched = files_checksum([str(path), None])
    assert touched != first
    path.write_bytes(b'123456')
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert files_checksum([str(path), None]) != touched  # same time, other size
    assert files_checksum([str(path), None]) != files_checksum([None, str(path)])  # order
    missing = str(tmp_path / 'gone.png')
    assert files_checksum([missing]) != files_checksum([None])


class Items:
    def __len__(self):
        return 3

    def get_data_info(self, index):
        return dict(img_path=f'img{index}', seg_map_path=f'lab{index}' if index else None)


def test_dataset_files_lists_images_and_label_maps():
    assert dataset_files(Items()) == ['img0', 'img1', 'img2']
    assert dataset_files(Items(), [0, 2], labels=True) == ['img0', None, 'img2', 'lab2']


def test_changed_entries_names_what_differs():
    old = dict(labeler={'k': 1}, target_files_checksum='a', backbone='vit')
    new = dict(labeler={'k': 2}, target_files_checksum='b', backbone='vit', extra=1)
    assert changed_entries(old, new) == 'extra, labeler, target_files_checksum'
    assert changed_entries(None, new) == ''


def _model(mean=(0.0, 0.0, 0.0), bgr_to_rgb=True, out_indices=1, feature_dtype='fp32',
           seed=0):
    """A stand-in segmentor: a backbone with the settings the features depend on, and
    MMSeg's data preprocessor."""
    from mmseg.models import SegDataPreProcessor
    torch.manual_seed(seed)
    model = torch.nn.Module()
    model.backbone = torch.nn.Linear(2, 2)
    model.backbone.model_name = 'vit_small_patch14_dinov2'
    model.backbone.out_indices, model.backbone.feature_dtype = out_indices, feature_dtype
    model.data_preprocessor = SegDataPreProcessor(mean=list(mean), std=[1.0, 1.0, 1.0],
                                                  bgr_to_rgb=bgr_to_rgb)
    return model


def _fingerprint(model, **changes):
    settings = dict(model=model, labeler_cfg=dict(type='SAOTLabeler'), num_classes=19,
                    ignore_index=255, source_cfg=dict(type='GTA5Dataset'),
                    target_pipeline=None, keys=['a', 'b'], feature_index=-1,
                    num_source_images=None, target_mean_images=64, target_mean_files=['a.png'],
                    source_files=['s.png', 's_labelTrainIds.png'])
    settings.update(changes)
    return make_fingerprint(**settings)


@pytest.mark.parametrize('change, entries', [
    (dict(mean=(123.675, 116.28, 103.53)), 'feature_settings'),  # normalisation
    (dict(bgr_to_rgb=False), 'feature_settings'),  # channel order
    (dict(out_indices=4), 'feature_settings'),  # which blocks the backbone outputs
    (dict(feature_dtype='bf16'), 'feature_settings'),
    (dict(seed=1), 'weights_checksum'),  # other backbone weights
])
def test_the_fingerprint_follows_what_decides_the_features(change, entries):
    # a cache labelled with other features must not be reused: these used to be left out
    base = _fingerprint(_model())
    assert _fingerprint(_model()) == base
    assert changed_entries(base, _fingerprint(_model(**change))) == entries


def test_the_fingerprint_names_the_device_the_labels_are_made_on():
    # the labeller solves densely up to another size on a GPU, with fp16 products: a
    # cache begun on the CPU and completed on a GPU mixed two labellings
    assert _fingerprint(_model())['device'] == 'cpu'
    if torch.cuda.is_available():
        assert _fingerprint(_model().cuda())['device'] == 'cuda'


def test_the_fingerprint_follows_the_label_space():
    base = _fingerprint(_model())
    assert changed_entries(base, _fingerprint(_model(), num_classes=20)) == 'num_classes'
    assert changed_entries(base, _fingerprint(_model(), ignore_index=0)) == 'ignore_index'


class _Leaf(Dataset):
    def __init__(self, transforms):
        from mmengine.dataset import Compose
        from mmengine.registry import init_default_scope
        init_default_scope('mmseg')
        self.pipeline = Compose(transforms)

    def __len__(self):
        return 1


class _Repeat(Dataset):
    def __init__(self, dataset):
        self.dataset = dataset


def _resize(scale):
    return [dict(type='LoadImageFromFile'), dict(type='Resize', scale=scale)]


def test_the_pipelines_under_a_wrapped_target_are_in_the_fingerprint():
    # a ConcatDataset/RepeatDataset has no pipeline of its own: the fingerprint held
    # None, and a labelling pipeline changed under it reused the stale labels
    from torch.utils.data import ConcatDataset

    from mmseg_saot.engine.pseudo_labels.fingerprint import _plain, dataset_pipelines
    plain = _Leaf(_resize((84, 56)))
    assert dataset_pipelines(plain) == _plain(plain.pipeline) == repr(plain.pipeline)
    for wrap in (lambda leaf: ConcatDataset([_Leaf(_resize((84, 56))), leaf]), _Repeat):
        small, large = (dataset_pipelines(wrap(_Leaf(_resize(s))))
                        for s in ((84, 56), (168, 112)))
        assert small and small != large
        assert small == dataset_pipelines(wrap(_Leaf(_resize((84, 56)))))


def test_a_transform_without_a_repr_is_described_the_same_in_every_process():
    # its default repr holds its memory address: every run saw "changed:
    # target_pipeline", labelled everything again and left a stale copy
    from mmseg_saot.engine.pseudo_labels.fingerprint import dataset_pipelines
    transforms = [dict(type='LoadImageFromFile'),
                  dict(type='ResizeShortestEdge', scale=(56, 84), max_size=200)]
    first, second = (dataset_pipelines(_Leaf(transforms)) for _ in range(2))
    assert ' at 0x' not in str(first) and first == second
    assert 'ResizeShortestEdge' in str(first) and '56' in str(first)


def test_spellings_of_the_same_bank_keep_the_fingerprint(tmp_path):
    # a trailing slash on the source data_root, the same files at another path (staged
    # to a node's disk, copied with cp -a), or a bank count above the number of source
    # images (all of them either way), moved the cache aside and relabelled
    (tmp_path / 'gta5').mkdir()
    (tmp_path / 'gta5' / 's.png').write_bytes(b'image')
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 's.png').write_bytes(b'another image')

    def fingerprint(root='data/gta5', count=None, mean_images=64, files='gta5'):
        return _fingerprint(_model(), source_cfg=dict(type='GTA5Dataset', data_root=root),
                            num_source_images=count, source_set_size=4,
                            target_mean_images=mean_images,
                            source_files=[str(tmp_path / files / 's.png')])
    base = fingerprint()
    shutil.copytree(tmp_path / 'gta5', tmp_path / 'staged')  # keeps modification times
    for same in (fingerprint(root='data/gta5/'), fingerprint(root='./data/gta5'),
                 fingerprint(root='/scratch/job1/gta5', files='staged'),
                 fingerprint(count=4), fingerprint(count=100), fingerprint(mean_images=2)):
        assert changed_entries(base, same) == ''
    assert changed_entries(base, fingerprint(root='data/other', files='other')) == \
        'source_files_checksum'
    assert changed_entries(base, _fingerprint(
        _model(), source_cfg=dict(type='CityscapesDataset', data_root='data/gta5'),
        source_set_size=4, source_files=[str(tmp_path / 'gta5' / 's.png')])) == 'source'
    assert changed_entries(base, fingerprint(count=3)) == 'num_source_images'
    assert changed_entries(base, fingerprint(mean_images=1)) == 'target_mean_images'


def test_spellings_of_the_same_labeller_keep_the_fingerprint():
    # the raw config was hashed: with or without type='SAOTLabeler', or a default
    # stated (seed=0), moved the cache aside and labelled everything again
    import mmseg_saot  # noqa: F401  (registers SAOTLabeler)
    base = _fingerprint(_model(), labeler_cfg=dict(type='SAOTLabeler'))
    for same in (dict(), dict(type='mmseg.SAOTLabeler'), dict(seed=0, epsilon=0.05),
                 dict(type='SAOTLabeler', rho=[0.1, 1.0])):
        assert changed_entries(base, _fingerprint(_model(), labeler_cfg=same)) == ''
    other = _fingerprint(_model(), labeler_cfg=dict(epsilon=0.1))
    assert changed_entries(base, other) == 'labeler'
    assert other['labeler'] == {'epsilon': 0.1}
