"""Validation of both heads of an EMA-teacher model: ``teacher/mIoU``, ``student/mIoU``."""
import json
import math
import os
import os.path as osp
from typing import Sequence

from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import ValLoop
from mmseg.registry import LOOPS

BRANCHES = ('teacher', 'student')


@LOOPS.register_module()
class TeacherStudentValLoop(ValLoop):
    """Run the validation set through the teacher head, then the student head.

    Metrics are logged as ``teacher/<name>`` and ``student/<name>``; the plain
    names (``mIoU``, used by ``save_best``) are those of the model's ``predict_on``
    head. The main process also writes ``<work_dir>/eval/iter_<N>.json`` with both
    heads' metrics and, with :class:`~mmseg_saot.evaluation.ClassIoUMetric`, their
    per-class IoU. A model without a teacher (no ``predict_on``) is validated once,
    as by ``ValLoop``. With the model's feature cache on, the second pass reuses
    the backbone features of the first.

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
            raise ValueError(f'TeacherStudentValLoop: branches must be a non-empty subset of '
                             f'{BRANCHES}, got {tuple(branches)}.')
        self.branches = tuple(branches)

    def run(self) -> dict:
        model = self.runner.model.module if is_model_wrapper(self.runner.model) \
            else self.runner.model
        if not hasattr(model, 'predict_on'):
            return super().run()
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        self.runner.model.eval()
        default, metrics, record = model.predict_on, {}, {}
        try:
            for branch in self.branches:
                model.predict_on = branch
                print_log(f'Validating the {branch} head', logger='current')
                for idx, data_batch in enumerate(self.dataloader):
                    self.run_iter(idx, data_batch)
                branch_metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
                metrics.update({f'{branch}/{k}': v for k, v in branch_metrics.items()})
                if branch == default or len(self.branches) == 1:
                    metrics.update(branch_metrics)
                record[branch] = dict(metrics={k: float(v) for k, v in branch_metrics.items()},
                                      per_class_iou=self._per_class_iou())
        finally:
            model.predict_on = default
        self._write_record(record)
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    def _per_class_iou(self) -> dict:
        """The ClassIoUMetric's per-class IoU, NaN (absent class) as None."""
        for metric in self.evaluator.metrics:
            if getattr(metric, 'per_class_iou', None):
                return {name: None if math.isnan(value) else value
                        for name, value in metric.per_class_iou.items()}
        return {}

    def _write_record(self, record: dict) -> None:
        if not is_main_process():
            return
        folder = osp.join(self.runner.work_dir, 'eval')
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, f'iter_{self.runner.iter}.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(dict(iter=self.runner.iter, **record), f, indent=1)
        os.replace(path + '.tmp', path)
