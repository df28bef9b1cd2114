"""Score pseudo-labels against ground truth: confusion counts, per-class IoU, a table."""
import math
from typing import Dict, List, Optional, Sequence

import numpy as np


class PseudoLabelScore:
    """Accumulates the confusion of one labelling method over images.

    Two views: ``raw`` scores the unfiltered labels on every labelled ground-truth
    pixel (a pixel without a label counts as a miss); ``kept`` scores the filtered
    labels on the pixels the confidence filter kept (what training sees).

    Args:
        num_classes: C. ignore_index: label ignored in the ground truth.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.raw = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self.kept = np.zeros((num_classes, num_classes + 1), dtype=np.int64)
        self.kept_pixels = 0
        self.labelled_pixels = 0
        self.seconds = 0.0

    def confusion(self, pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
        """``(C, C + 1)`` counts, rows = ground truth, last column = predicted ignore."""
        valid = gt != self.ignore_index
        truth = gt[valid].astype(np.int64)
        beyond = truth[(truth < 0) | (truth >= self.num_classes)]
        if beyond.size:
            raise ValueError(f'ground truth holds {int(beyond.max())}, not a class in [0, '
                             f'{self.num_classes}) nor ignore_index={self.ignore_index}: label '
                             'ids rather than train ids? (convert them: '
                             'tools/dataset_converters/)')
        guess = pred[valid].astype(np.int64)
        guess = np.where((guess == self.ignore_index) | (guess >= self.num_classes),
                         self.num_classes, guess)
        flat = np.bincount(truth * (self.num_classes + 1) + guess,
                           minlength=self.num_classes * (self.num_classes + 1))
        return flat.reshape(self.num_classes, self.num_classes + 1)

    def add(self, labels: np.ndarray, raw_labels: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: filtered and unfiltered ``(H, W)`` labels and its ground truth.

        Raises:
            ValueError: the ground truth has another size than the labels.
        """
        if gt.ndim == 3:
            raise ValueError(f'ground truth of shape {gt.shape} is a colour image, not a '
                             'label map of class ids (train ids, one channel): convert it '
                             '(tools/dataset_converters/; python tools/check_data.py CONFIG '
                             'lists such files).')
        if gt.shape != labels.shape:
            raise ValueError(f'ground truth {gt.shape} and pseudo-labels {labels.shape} '
                             'differ in size.')
        gt_valid = gt != self.ignore_index
        self.raw += self.confusion(raw_labels, gt)
        kept = gt_valid & (labels != self.ignore_index)
        self.kept += self.confusion(labels, np.where(kept, gt, self.ignore_index))
        self.kept_pixels += int(kept.sum())
        self.labelled_pixels += int(gt_valid.sum())

    @staticmethod
    def iou(conf: np.ndarray) -> np.ndarray:
        """Per-class IoU of a confusion matrix; NaN where the union is empty."""
        inter = np.diag(conf[:, :-1]).astype(np.float64)
        union = conf.sum(1) + conf[:, :-1].sum(0) - inter
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, inter / np.maximum(union, 1), math.nan)

    def summary(self, class_names: Sequence[str]) -> Dict:
        """JSON-able result: per-class IoU (raw), mIoU raw and kept, kept share, time."""
        present = self.raw.sum(1) > 0  # classes in the ground truth
        raw, kept = self.iou(self.raw), self.iou(self.kept)
        return dict(
            per_class_iou={n: (None if not present[c] or math.isnan(raw[c]) else
                               round(100 * float(raw[c]), 2))
                           for c, n in enumerate(class_names)},
            miou=_mean_percent(np.where(present, raw, math.nan)),
            # over the same classes for every method: one whose kept pixels were all
            # dropped counts 0 (skipped as NaN, a filter that lost a class scored higher)
            miou_kept=(_mean_percent(np.where(present, np.nan_to_num(kept), math.nan))
                       if self.kept_pixels else None),
            kept_percent=round(100 * self.kept_pixels / max(1, self.labelled_pixels), 2),
            seconds=round(self.seconds, 2))


def _mean_percent(iou: np.ndarray) -> Optional[float]:
    """The mean of the IoUs that are not NaN, in per cent; None (JSON null) if none is:
    no pixel kept, or no ground truth."""
    values = iou[~np.isnan(iou)]
    return round(100 * float(values.mean()), 2) if values.size else None


def format_table(results: Dict[str, Dict], class_names: Sequence[str]) -> str:
    """Per-class IoU (unfiltered) side by side per method, then the summary rows."""
    names = list(results)
    width = max(11, *(len(n) + 2 for n in names))
    lines: List[str] = ['class'.ljust(14) + ''.join(n.rjust(width) for n in names)]
    for cls in class_names:
        values = [results[n]['per_class_iou'][cls] for n in names]
        if all(v is None for v in values):
            continue  # absent from the ground truth
        lines.append(cls.ljust(14) + ''.join(
            ('-' if v is None else f'{v:.1f}').rjust(width) for v in values))
    for key, label in (('miou', 'mIoU (all)'), ('miou_kept', 'mIoU (kept)'),
                       ('kept_percent', 'kept %'), ('seconds', 'seconds')):
        lines.append(label.ljust(14) + ''.join(
            ('-' if results[n][key] is None else f'{results[n][key]:.1f}').rjust(width)
            for n in names))
    return '\n'.join(lines)
