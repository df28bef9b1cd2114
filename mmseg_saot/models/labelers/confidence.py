"""Confidence filtering of pseudo-labels: low-confidence pixels become ignore."""
import numbers
from typing import List, Tuple

import torch

FILTER_MODES = ('none', 'threshold', 'quantile')


def filter_confidence(labels: torch.Tensor, confidence: torch.Tensor, *,
                      mode: str = 'quantile', threshold: float = 0.0, quantile: float = 0.2,
                      num_classes: int = 19, ignore_index: int = 255) -> torch.Tensor:
    """Set low-confidence labels to ``ignore_index``.

    * ``'threshold'``: drop pixels with ``confidence < threshold``.
    * ``'quantile'``: per predicted class c, drop the pixels below the ``quantile``-th
      quantile of the confidences of the pixels predicted c (over all of ``labels``),
      so every class keeps about ``1 - quantile`` of its pixels whatever its typical
      confidence (rare, hard classes are not wiped out by a global threshold); pixels
      below ``threshold`` (default 0: none) are dropped as well.
    * ``'none'``: unchanged.

    Args:
        labels: ``(...)`` integer labels, ``ignore_index`` allowed.
        confidence: ``(...)`` confidences in [0, 1], same shape; NaN counts as 0.

    Returns:
        Filtered labels (a new tensor).
    """
    if mode not in FILTER_MODES:
        raise ValueError(f'filter_confidence: mode must be one of {FILTER_MODES}, got {mode!r}.')
    if labels.shape != confidence.shape:
        raise ValueError(f'filter_confidence: labels {tuple(labels.shape)} and confidence '
                         f'{tuple(confidence.shape)} differ in shape.')
    conf = torch.nan_to_num(confidence.float(), nan=0.0)
    keep = labels != ignore_index
    if mode == 'none':
        return labels.clone()
    if mode == 'quantile':
        cut = class_quantiles(labels, conf, keep, quantile, num_classes)
        safe = torch.where(keep, labels, torch.zeros_like(labels)).long()
        keep = keep & (conf >= cut[safe]) & (conf >= threshold)
    else:
        keep = keep & (conf >= threshold)
    return torch.where(keep, labels, torch.full_like(labels, ignore_index))


def class_quantiles(labels: torch.Tensor, conf: torch.Tensor, keep: torch.Tensor, q: float,
                    num_classes: int) -> torch.Tensor:
    """Lower ``q``-quantile of the confidences of each class, without a per-class loop.

    For a class with n kept pixels it is the ``min(floor(q n), n - 1)``-th smallest of
    their confidences (0 for a class without pixels). One stable sort by confidence and
    one stable sort by class order all pixels class by class (no host syncs: on a GPU
    this is a handful of kernels instead of ~100 for a loop over classes).

    Returns:
        ``(num_classes,)`` thresholds, dtype of ``conf``.
    """
    flat_conf = conf.reshape(-1)
    classes = torch.where(keep, labels, torch.full_like(labels, num_classes)).reshape(-1).long()
    by_conf = flat_conf.sort(stable=True).indices
    by_class = classes[by_conf].sort(stable=True).indices
    ordered = flat_conf[by_conf[by_class]]  # class-major, ascending confidence
    counts = torch.bincount(classes, minlength=num_classes + 1)[:num_classes]
    starts = counts.cumsum(0) - counts
    offset = torch.minimum((counts.double() * q).floor().long(), (counts - 1).clamp_min(0))
    index = (starts + offset).clamp(max=max(ordered.numel() - 1, 0))
    values = ordered[index] if ordered.numel() else torch.zeros_like(counts, dtype=conf.dtype)
    return torch.where(counts > 0, values, torch.zeros_like(values))


def ignore_outside(labels: torch.Tensor, valid_size, ignore_index: int) -> torch.Tensor:
    """``(B, H, W)`` ``labels`` with the pixels outside the top-left valid region set to
    ``ignore_index`` (``labels`` itself when there are none).

    ``valid_size``: None (all valid), one ``(H', W')`` for every image, or a sequence of
    ``B`` of them (images of different sizes padded to one batch).
    """
    if valid_size is None:
        return labels
    sizes = per_image_sizes(valid_size, labels.shape[0])
    if all(h >= labels.shape[-2] and w >= labels.shape[-1] for h, w in sizes):
        return labels
    out = torch.full_like(labels, ignore_index)
    for index, (height, width) in enumerate(sizes):
        out[index, :height, :width] = labels[index, :height, :width]
    return out


def _is_integer(value) -> bool:
    return (isinstance(value, numbers.Integral) or
            (isinstance(value, torch.Tensor) and value.ndim == 0))


def per_image_sizes(valid_size, batch: int) -> List[Tuple[int, int]]:
    """``valid_size`` as a list of ``batch`` ``(H', W')`` pairs (see :func:`ignore_outside`)."""
    if len(valid_size) == 2 and all(_is_integer(v) for v in valid_size):
        return [tuple(valid_size)] * batch
    sizes = [tuple(int(v) for v in size) for size in valid_size]
    if len(sizes) != batch or any(len(size) != 2 for size in sizes):
        raise ValueError(f'valid_size must be one (height, width) or one per image ({batch}), '
                         f'got {valid_size!r}.')
    return sizes
