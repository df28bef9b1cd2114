"""TeacherStudentValLoop with a mocked runner: both heads, prefixes, JSON, predict_on kept."""
import json
from unittest.mock import MagicMock

import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch import nn

from mmseg_saot.engine.runner import TeacherStudentValLoop
from mmseg_saot.evaluation import ClassIoUMetric

GT = torch.tensor([[0, 0, 1, 1]])


class TwoHeads(nn.Module):
    """Predicts all class 0 with the teacher, the truth with the student."""

    def __init__(self):
        super().__init__()
        self.predict_on, self.seen = 'teacher', []

    def val_step(self, batch):
        self.seen.append(self.predict_on)
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=GT[None])
        pred = torch.zeros_like(GT) if self.predict_on == 'teacher' else GT
        sample.pred_sem_seg = PixelData(data=pred[None])
        return [sample]


def make_loop(tmp_path, model, **kwargs):
    runner = MagicMock()
    runner.model, runner.work_dir, runner.iter = model, str(tmp_path), 7
    metric = ClassIoUMetric(iou_metrics=['mIoU'])
    runner.build_evaluator.return_value = Evaluator(metric)
    dataloader = MagicMock()
    dataloader.__iter__.side_effect = lambda: iter([{}])
    dataloader.dataset = MagicMock(metainfo=dict(classes=('a', 'b')), __len__=lambda s: 1)
    return TeacherStudentValLoop(runner, dataloader, dict(type='ClassIoUMetric'), **kwargs)


def test_both_heads_are_validated_and_written(tmp_path):
    model = TwoHeads()
    metrics = make_loop(tmp_path, model).run()
    assert model.seen == ['teacher', 'student'] and model.predict_on == 'teacher'
    assert metrics['student/mIoU'] == 100.0 and metrics['teacher/mIoU'] < 100.0
    assert metrics['mIoU'] == metrics['teacher/mIoU']  # the predict_on head
    record = json.loads((tmp_path / 'eval' / 'iter_7.json').read_text())
    assert record['student']['per_class_iou'] == {'a': 100.0, 'b': 100.0}
    assert record['teacher']['per_class_iou']['b'] == 0.0


def test_one_branch_only(tmp_path):
    model = TwoHeads()
    metrics = make_loop(tmp_path, model, branches=('student', )).run()
    assert model.seen == ['student'] and metrics['mIoU'] == 100.0
    with pytest.raises(ValueError, match='branches'):
        make_loop(tmp_path, model, branches=('ema', ))
