"""MMSeg's IoU metric that also keeps its per-class values for tools to read."""
from types import MappingProxyType
from typing import Dict, Mapping

import numpy as np
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


@METRICS.register_module()
class ClassIoUMetric(IoUMetric):
    """``IoUMetric`` whose last per-class IoU (percent) stays in ``per_class_iou``.

    The logged metrics are the parent's (aAcc, mIoU, ...); ``per_class_iou``
    (``{class name: IoU}``, NaN for a class absent from the ground truth, as in the
    pseudo-label tables; mmseg counts a class predicted but absent as 0) is what :class:`~mmseg_saot.engine.runner.TeacherStudentValLoop` writes to the
    work_dir's ``eval/`` JSON files. Set on the rank that computes the metrics (0).
    """

    # empty until the first compute_metrics, which replaces it (never mutated in place)
    per_class_iou: Mapping[str, float] = MappingProxyType({})

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)
        if results and not self.format_only:
            intersect = sum(r[0] for r in results).cpu().double().numpy()
            union = sum(r[1] for r in results).cpu().double().numpy()
            present = sum(r[3] for r in results).cpu().numpy() > 0
            with np.errstate(invalid='ignore', divide='ignore'):
                iou = np.where(present, 100.0 * intersect / union, np.nan)
            self.per_class_iou = {name: round(float(value), 2) for name, value in
                                  zip(self.dataset_meta['classes'], iou)}
        return metrics
