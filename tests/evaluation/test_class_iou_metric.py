"""ClassIoUMetric keeps the per-class IoU that IoUMetric only prints."""
import math

import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_saot.evaluation import ClassIoUMetric


def sample(pred, gt):
    s = SegDataSample()
    s.pred_sem_seg = PixelData(data=torch.tensor(pred)[None])
    s.gt_sem_seg = PixelData(data=torch.tensor(gt)[None])
    return s.to_dict()


def test_per_class_iou_is_kept_and_matches_the_mean():
    metric = ClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    metric.process({}, [sample([[0, 0, 1, 1, 2]], [[0, 1, 1, 1, 255]])])
    metrics = metric.evaluate(1)
    assert metric.per_class_iou['a'] == 50.0
    assert abs(metric.per_class_iou['b'] - 200 / 3) < 0.01
    # predicted on an ignored pixel only: absent from the truth, NaN (mmseg: NaN too)
    assert math.isnan(metric.per_class_iou['c'])
    assert abs(metrics['mIoU'] - (50 + 200 / 3) / 2) < 0.01


def test_a_class_predicted_but_absent_from_the_truth_is_nan():
    metric = ClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('a', 'b', 'c'))
    metric.process({}, [sample([[0, 2, 1, 1]], [[0, 0, 1, 1]])])
    metrics = metric.evaluate(1)
    assert math.isnan(metric.per_class_iou['c'])
    assert metric.per_class_iou['a'] == 50.0 and metric.per_class_iou['b'] == 100.0
    assert metrics['mIoU'] < 75  # mmseg counts c as 0


def test_instances_do_not_share_per_class_iou():
    import pytest
    fresh, used = ClassIoUMetric(), ClassIoUMetric()
    with pytest.raises(TypeError):
        fresh.per_class_iou['a'] = 1.0  # the class default is read-only
    used.dataset_meta = dict(classes=('a', 'b'))
    used.process({}, [sample([[0, 1]], [[0, 1]])])
    used.evaluate(1)
    assert used.per_class_iou == {'a': 100.0, 'b': 100.0}
    assert dict(fresh.per_class_iou) == {}
