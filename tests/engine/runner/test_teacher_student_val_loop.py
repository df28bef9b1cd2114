"""TeacherStudentValLoop with a mocked runner: both heads in one pass, prefixes, JSON."""
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

    def __init__(self, predict_on='teacher'):
        super().__init__()
        self.predict_on, self.seen = predict_on, []

    def val_step_branches(self, batch, branches):
        self.seen.append(tuple(branches))
        return {branch: [self.sample(branch)] for branch in branches}

    @staticmethod
    def sample(branch):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=GT[None])
        pred = torch.zeros_like(GT) if branch == 'teacher' else GT
        sample.pred_sem_seg = PixelData(data=pred[None])
        return sample


def make_loop(tmp_path, model, **kwargs):
    runner = MagicMock()
    runner.model, runner.work_dir, runner.iter = model, str(tmp_path), 7
    metric = ClassIoUMetric(iou_metrics=['mIoU'])
    runner.build_evaluator.return_value = Evaluator(metric)
    dataloader = MagicMock()
    dataloader.__iter__.side_effect = lambda: iter([{}, {}])  # two batches
    dataloader.__len__.return_value = 2
    dataloader.dataset = MagicMock(metainfo=dict(classes=('a', 'b')), __len__=lambda s: 2,
                                   data_root='data/cs',
                                   data_prefix=dict(img_path='data/cs/leftImg8bit/val'))
    return TeacherStudentValLoop(runner, dataloader, dict(type='ClassIoUMetric'), **kwargs)


def test_both_heads_are_validated_and_written(tmp_path):
    model = TwoHeads()
    loop = make_loop(tmp_path, model)
    metrics = loop.run()
    # one pass over the data, both heads per batch; each head its own evaluator
    assert model.seen == [('teacher', 'student')] * 2
    assert metrics['student/mIoU'] == 100.0 and metrics['teacher/mIoU'] < 100.0
    assert metrics['mIoU'] == metrics['teacher/mIoU']  # the predict_on head
    shown = [c.kwargs['outputs'][0] for c in loop.runner.call_hook.call_args_list
             if c.args[0] == 'after_val_iter']
    assert len(shown) == 2 and all(torch.all(s.pred_sem_seg.data == 0) for s in shown)
    record = json.loads((tmp_path / 'eval' / 'iter_7.json').read_text())
    assert record['student']['per_class_iou'] == {'a': 100.0, 'b': 100.0}
    assert record['teacher']['per_class_iou']['b'] == 0.0
    # the images validated on, for tools/summarize_uda.py to compare runs by
    assert record['dataset'] == dict(type='MagicMock', data_root='data/cs',
                                     img_path='data/cs/leftImg8bit/val', num_images=2)


def test_one_branch_only(tmp_path):
    model = TwoHeads()  # predict_on 'teacher' is not validated: plain names = student's
    metrics = make_loop(tmp_path, model, branches=('student', )).run()
    assert model.seen == [('student', )] * 2 and metrics['mIoU'] == 100.0
    assert 'teacher/mIoU' not in metrics
    with pytest.raises(ValueError, match='branches'):
        make_loop(tmp_path, model, branches=('ema', ))


def test_student_predict_on_gives_the_plain_names(tmp_path):
    metrics = make_loop(tmp_path, TwoHeads(predict_on='student')).run()
    assert metrics['mIoU'] == metrics['student/mIoU'] == 100.0
