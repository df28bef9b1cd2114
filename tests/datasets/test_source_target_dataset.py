"""SourceTargetDataset: one target sample with a labelled source sample per item."""
import numpy as np
import pytest
from mmengine.registry import init_default_scope
from tiny_uda import write_tiny_uda_data
from torch.utils.data import Dataset

from mmseg_saot.datasets import SourceTargetDataset
from mmseg_saot.utils.errors import UserInputError

PIPELINE = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'),
            dict(type='PackSegInputs')]


@pytest.fixture
def root(tmp_path):
    return write_tiny_uda_data(tmp_path, num_source=3, num_target=4)


def configs(root):
    source = dict(type='GTA5Dataset', data_root=str(root / 'gta5'),
                  data_prefix=dict(img_path='images', seg_map_path='labels'), pipeline=PIPELINE)
    target = dict(type='CityscapesDataset', data_root=str(root / 'cs'),
                  data_prefix=dict(img_path='leftImg8bit/train', seg_map_path='gtFine/train'),
                  pipeline=PIPELINE)
    return source, target


def test_items_pair_target_i_with_a_seeded_source_sample(root):
    init_default_scope('mmseg')
    dataset = SourceTargetDataset(*configs(root))
    assert len(dataset) == 4 and dataset.dataset is dataset.target
    assert dataset.get_data_info(2) == dataset.target.get_data_info(2)
    np.random.seed(0)
    item = dataset[2]
    assert set(item['inputs']) == set(item['data_samples']) == {'source', 'target'}
    assert item['data_samples']['target'].img_path == dataset.target.get_data_info(2)['img_path']
    assert 'gta5' in item['data_samples']['source'].img_path
    np.random.seed(0)
    again = dataset[2]
    assert again['data_samples']['source'].img_path == item['data_samples']['source'].img_path
    drawn = {dataset[0]['data_samples']['source'].img_path for _ in range(30)}
    assert len(drawn) == 3  # every source image is drawn


def test_ranks_draw_their_own_sources_without_workers(root, monkeypatch):
    # without DataLoader workers every rank's numpy.random is seeded alike: all ranks
    # drew the same source sequence
    from mmseg_saot.datasets import source_target_dataset
    init_default_scope('mmseg')
    dataset = SourceTargetDataset(*configs(root))
    draws = {}
    for rank in (0, 1, 2):
        monkeypatch.setattr(source_target_dataset, 'get_dist_info', lambda: (rank, 3),
                            raising=False)
        np.random.seed(0)
        draws[rank] = [dataset[0]['data_samples']['source'].img_path for _ in range(16)]
    np.random.seed(0)
    paths = [dataset.source.get_data_info(i)['img_path'] for i in range(3)]
    assert draws[0] == [paths[np.random.randint(3)] for _ in range(16)]  # as before
    assert draws[1] != draws[0] and draws[2] != draws[0] and draws[1] != draws[2]
    assert all(set(d) == set(paths) for d in draws.values())


class OtherClasses(Dataset):
    metainfo = dict(classes=('cat', 'dog'))

    def __len__(self):
        return 1


def test_different_label_spaces_are_refused(root):
    init_default_scope('mmseg')
    source, _ = configs(root)
    with pytest.raises(UserInputError, match='different classes'):
        SourceTargetDataset(source, OtherClasses())


def test_an_empty_source_or_target_is_named(root):
    init_default_scope('mmseg')
    _, target = configs(root)
    target = SourceTargetDataset(configs(root)[0], target).target

    class Empty(Dataset):
        metainfo = target.metainfo

        def __len__(self):
            return 0

    with pytest.raises(UserInputError, match='source dataset is empty'):
        SourceTargetDataset(Empty(), target)
    # the docstring said so; an empty target built and failed later, elsewhere
    with pytest.raises(UserInputError, match='target dataset is empty'):
        SourceTargetDataset(configs(root)[0], Empty())
