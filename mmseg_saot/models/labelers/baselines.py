"""The ablation ladder's baselines as soft labels: hard NN and kNN label transfer."""
from typing import Tuple

import torch
import torch.nn.functional as F

from mmseg_saot.ot import knn_transfer, nn_transfer


def baseline_transfer(kind: str, src: torch.Tensor, src_labels: torch.Tensor,
                      tgt: torch.Tensor, num_classes: int, *, knn_k: int = 30,
                      knn_temperature: float = 0.02,
                      ignore_index: int = 255) -> Tuple[torch.Tensor, torch.Tensor]:
    """Soft labels of one target by ``kind`` = ``'nn'`` or ``'knn'`` transfer.

    Args:
        src: ``(N, D)`` labelled source features; src_labels: ``(N,)``.
        tgt: ``(M, D)`` target features.

    Returns:
        ``(probs (M, C), mass (M,))``: hard NN gives one-hot rows and mass 1 (0 where
        no labelled source was found), kNN its softmax votes and their mass.
    """
    if kind == 'nn':
        out = nn_transfer(src, src_labels, tgt, ignore_index=ignore_index)
        valid = out.labels != ignore_index
        probs = F.one_hot(torch.where(valid, out.labels, 0).long(), num_classes)
        return probs.float() * valid[:, None], valid.float()
    if kind == 'knn':
        out = knn_transfer(src, src_labels, tgt, num_classes, k=knn_k,
                           temperature=knn_temperature, ignore_index=ignore_index)
        return out.probs.float(), out.mass.float()
    raise ValueError(f"baseline_transfer: kind must be 'nn' or 'knn', got {kind!r}.")
