"""Patch-level labels of pixel label maps: what a source patch votes for in transfer."""
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
