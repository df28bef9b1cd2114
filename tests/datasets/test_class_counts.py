"""A decode head and a dataset with different numbers of classes are named before a run."""
from mmengine.config import Config

import mmseg_saot  # noqa: F401  (registers GTA5Dataset)
from mmseg_saot.datasets.class_counts import class_count_problems, dataset_classes

FIVE = dict(classes=('road', 'sidewalk', 'building', 'vegetation', 'sky'),
            palette=[[0, 0, 0]] * 5)


def config(num_classes, val_set, test_set=None):
    return Config(dict(
        model=dict(decode_head=dict(type='MLPHead', num_classes=num_classes)),
        train_dataloader=dict(dataset=dict(type='BaseSegDataset', metainfo=FIVE)),
        val_dataloader=dict(dataset=val_set),
        test_dataloader=dict(dataset=test_set or val_set)))


def test_classes_come_from_metainfo_or_the_dataset_type():
    assert dataset_classes(dict(type='BaseSegDataset', metainfo=FIVE)) == list(FIVE['classes'])
    assert len(dataset_classes(dict(type='CityscapesDataset'))) == 19
    assert len(dataset_classes(dict(type='mmseg.GTA5Dataset'))) == 19
    assert dataset_classes(dict(type='NoSuchDataset')) is None
    # a pure-Python config gives the class itself: str() of it found nothing, so the
    # check was skipped
    from mmseg.datasets import CityscapesDataset
    assert len(dataset_classes(dict(type=CityscapesDataset))) == 19


def test_a_val_set_left_at_cityscapes_under_a_five_class_head_is_named():
    cfg = config(5, dict(type='CityscapesDataset'))
    assert class_count_problems(cfg, ('train',)) == []
    (problem,) = class_count_problems(cfg, ('train', 'val'))
    assert problem.startswith('model.decode_head.num_classes is 5, but val_dataloader.dataset '
                              '(CityscapesDataset) has 19 classes (road, sidewalk, building, '
                              'wall, ...): the head and the metric would disagree')
    assert 'set model.decode_head.num_classes=19' in problem


def test_a_nineteen_class_head_on_a_five_class_train_set_is_named():
    cfg = config(19, dict(type='CityscapesDataset'))
    (problem,) = class_count_problems(cfg, ('train', 'val'))
    assert 'but train_dataloader.dataset (BaseSegDataset) has 5 classes' in problem
    assert class_count_problems(config(5, dict(type='BaseSegDataset', metainfo=FIVE)),
                                ('train', 'val', 'test')) == []


def test_run_options_stop_on_it():
    import pytest

    from mmseg_saot.utils.errors import ConfigError
    from mmseg_saot.utils.run_options import check_run_options
    with pytest.raises(ConfigError, match='^x.py: model.decode_head.num_classes is 5, but '
                       'test_dataloader.dataset'):
        check_run_options(dict(config(5, dict(type='CityscapesDataset')),
                               test_cfg=dict(type='TestLoop'), test_evaluator=dict()),
                          'x.py', training=False)

