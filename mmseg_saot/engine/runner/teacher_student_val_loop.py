"""Validation of both heads of an EMA-teacher model: ``teacher/mIoU``, ``student/mIoU``."""
import copy
import json
import math
import os.path as osp
from typing import Sequence

import torch
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmengine.runner.amp import autocast
from mmseg.registry import LOOPS

from mmseg_saot.datasets.identity import dataset_identity
from mmseg_saot.utils.atomic import atomic_write_text
from mmseg_saot.utils.errors import ConfigError

BRANCHES = ('teacher', 'student')


@LOOPS.register_module()
class TeacherStudentValLoop(ValLoop):
    """Validate the teacher and the student head in one pass over the validation set.

    Each batch goes through the backbone once (per image, or per crop in slide
    inference) and through both heads (``EMATeacherUDA.val_step_branches``); each head
    has its own copy of the evaluator. Metrics are logged as ``teacher/<name>`` and
    ``student/<name>``; the plain names (``mIoU``, used by ``save_best``) are those of
    the model's ``predict_on`` head, whose predictions also go to the ``after_val_iter``
    hooks (visualisation). The main process also writes
    ``<work_dir>/eval/iter_<N>.json`` with both heads' metrics and, with
    :class:`~mmseg_saot.evaluation.ClassIoUMetric`, their per-class IoU. A model
    without a teacher (no ``val_step_branches``) is validated as by ``ValLoop``.

    Args:
        runner, dataloader, evaluator, fp16: as for ``ValLoop``.
        branches: the heads to validate, in order (e.g. ``('student',)`` for a
            source-only baseline whose teacher is never trained).
    """

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False,
                 branches: Sequence[str] = BRANCHES) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        unknown = [b for b in branches if b not in BRANCHES]
        if unknown or not branches:
            raise ConfigError(f'TeacherStudentValLoop: branches must be a non-empty subset of '
                              f'{BRANCHES}, got {tuple(branches)}.')
        self.branches = tuple(branches)
        # one evaluator per head (copies made after ValLoop gave it the dataset meta)
        self.evaluators = {branch: copy.deepcopy(self.evaluator) for branch in self.branches}

    def run(self) -> dict:
        model = self.runner.model.module if is_model_wrapper(self.runner.model) \
            else self.runner.model
        if not hasattr(model, 'val_step_branches'):
            return super().run()
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        shown = model.predict_on if model.predict_on in self.branches else self.branches[0]
        print_log(f'Validating the {" and ".join(self.branches)} head(s)', logger='current')
        for idx, data_batch in enumerate(self.dataloader):
            self._run_branches_iter(model, idx, data_batch, shown)
        metrics, record = {}, {}
        for branch, evaluator in self.evaluators.items():
            # MMSeg titles each table "per class results:"; say whose comes next
            print_log(f'{branch} head:', logger='current')
            branch_metrics = evaluator.evaluate(len(self.dataloader.dataset))
            metrics.update({f'{branch}/{k}': v for k, v in branch_metrics.items()})
            if branch == shown:
                metrics.update(branch_metrics)
            record[branch] = dict(metrics={k: float(v) for k, v in branch_metrics.items()},
                                  per_class_iou=self._per_class_iou(evaluator))
        self._write_record(record)
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    @torch.no_grad()
    def _run_branches_iter(self, model, idx: int, data_batch, shown: str) -> None:
        self.runner.call_hook('before_val_iter', batch_idx=idx, data_batch=data_batch)
        with autocast(enabled=self.fp16):
            outputs = model.val_step_branches(data_batch, self.branches)
        for branch, evaluator in self.evaluators.items():
            evaluator.process(data_samples=outputs[branch], data_batch=data_batch)
        self.runner.call_hook('after_val_iter', batch_idx=idx, data_batch=data_batch,
                              outputs=outputs[shown])

    @staticmethod
    def _per_class_iou(evaluator) -> dict:
        """The ClassIoUMetric's per-class IoU, NaN (absent class) as None."""
        for metric in evaluator.metrics:
            if getattr(metric, 'per_class_iou', None):
                return {name: None if math.isnan(value) else value
                        for name, value in metric.per_class_iou.items()}
        return {}

    def _write_record(self, record: dict) -> None:
        if not is_main_process():
            return
        path = osp.join(self.runner.work_dir, 'eval', f'iter_{self.runner.iter}.json')
        dataset = dataset_identity(self.dataloader.dataset)  # for tools/summarize_uda.py
        atomic_write_text(path, json.dumps(dict(iter=self.runner.iter, dataset=dataset,
                                                **record), indent=1))
