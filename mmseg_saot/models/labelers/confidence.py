"""Confidence filtering of pseudo-labels: low-confidence pixels become ignore."""
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
        cut = torch.zeros_like(conf)
        for c in range(num_classes):
            members = (labels == c) & keep
            if bool(members.any()):
                cut[members] = _quantile(conf[members], quantile)
        keep = keep & (conf >= cut) & (conf >= threshold)
    else:
        keep = keep & (conf >= threshold)
    return torch.where(keep, labels, torch.full_like(labels, ignore_index))


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """Lower ``q``-quantile of a 1-D tensor (no size limit, unlike ``torch.quantile``)."""
    ordered = values.sort().values
    return ordered[min(int(q * ordered.numel()), ordered.numel() - 1)]
