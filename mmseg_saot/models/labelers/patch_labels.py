"""Patch-level labels of pixel label maps (what a source patch votes for in transfer),
and patch-level soft labels back to pixels (what a target pixel receives)."""
from typing import Tuple

import torch
import torch.nn.functional as F


def patch_labels(labels: torch.Tensor, patch: int = 14, num_classes: int = 19,
                 ignore_index: int = 255, min_valid: float = 0.5) -> torch.Tensor:
    """Majority class of each ``patch x patch`` cell.

    Args:
        labels: ``(B, H, W)`` integer labels; H and W are padded up to multiples of
            ``patch`` with ``ignore_index`` (as the data preprocessor pads images).
        patch: the backbone's patch size in pixels.
        num_classes: C; values outside ``[0, C)`` other than ``ignore_index`` raise.
        ignore_index: label of unlabelled pixels.
        min_valid: a cell whose labelled fraction is below this is ``ignore_index``.

    Returns:
        ``(B, ceil(H / patch), ceil(W / patch))`` long labels.

    Raises:
        ValueError: a label outside ``[0, num_classes)`` that is not ``ignore_index``.
    """
    lab = labels.long()
    valid = lab != ignore_index
    bad = valid & ((lab < 0) | (lab >= num_classes))
    if bool(bad.any()):
        raise ValueError(f'patch_labels: label value {int(lab[bad][0])} is neither a class in '
                         f'[0, {num_classes}) nor ignore_index={ignore_index}; check the '
                         'label files (train ids expected) and num_classes.')
    pad_h, pad_w = -lab.shape[-2] % patch, -lab.shape[-1] % patch
    if pad_h or pad_w:
        lab = F.pad(lab, (0, pad_w, 0, pad_h), value=ignore_index)
        valid = lab != ignore_index
    onehot = F.one_hot(torch.where(valid, lab, 0), num_classes).float()
    onehot = onehot * valid[..., None]
    hist = F.avg_pool2d(onehot.permute(0, 3, 1, 2), patch)  # (B, C, h, w) fractions
    cls = hist.argmax(1)
    return torch.where(hist.sum(1) >= min_valid, cls, torch.full_like(cls, ignore_index))


def patch_probs_to_pixels(probs: torch.Tensor, out_size: Tuple[int, int],
                          ignore_index: int = 255) -> Tuple[torch.Tensor, torch.Tensor]:
    """Upsample ``(1, C, h, w)`` patch soft labels to ``(H, W)`` labels and confidence.

    Bilinear over the patch grid; a pixel is ``ignore_index`` when less than half of its
    interpolation weight comes from patches with mass (rows of zeros); its confidence is
    the upsampled maximum probability, clamped to [0, 1].

    Args:
        probs: ``(1, C, h, w)`` class probabilities per patch (rows may sum to < 1).
        out_size: ``(H, W)``, usually ``(h * patch, w * patch)``.
        ignore_index: label of pixels without enough mass.

    Returns:
        ``(H, W)`` long labels and ``(H, W)`` float confidence.
    """
    up = F.interpolate(probs, size=out_size, mode='bilinear', align_corners=False)[0]
    conf, labels = up.max(0)
    labels = torch.where(up.sum(0) >= 0.5, labels, torch.full_like(labels, ignore_index))
    return labels, conf.clamp(0.0, 1.0)
