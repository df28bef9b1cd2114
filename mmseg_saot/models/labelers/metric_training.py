"""Training of the appearance metric by differentiable OT label transfer between sources."""
import math
import time
from dataclasses import dataclass, field
from typing import List, Tuple, Union

import torch
import torch.nn.functional as F

from mmseg_saot.ot import cosine_cost, sinkhorn
from .metric import LowRankMetric


@dataclass
class MetricTrainingLog:
    """Per-step transfer losses (cross-entropy, nats) and the wall time in seconds."""

    losses: List[float] = field(default_factory=list)
    seconds: float = 0.0


def sample_valid_patches(labels: torch.Tensor, num: int, gen: torch.Generator,
                         ignore_index: int = 255) -> torch.Tensor:
    """``num`` indices of labelled patches of one image (with replacement if too few).

    Args:
        labels: ``(P,)`` patch labels of one image with at least one labelled patch.
    """
    valid = (labels != ignore_index).nonzero()[:, 0]
    if valid.numel() >= num:
        return valid[torch.randperm(valid.numel(), generator=gen)[:num]]
    return valid[torch.randint(valid.numel(), (num,), generator=gen)]


def transfer_loss(metric: LowRankMetric, src: torch.Tensor, src_lab: torch.Tensor,
                  tgt: torch.Tensor, tgt_lab: torch.Tensor, num_classes: int, *,
                  epsilon: float, rho: Union[float, Tuple[float, float]],
                  num_iters: int = 300, tol: float = 1e-5) -> torch.Tensor:
    """Cross-entropy of OT-transferred labels against the receiving image's labels.

    For each pair b, :math:`P_b` solves :func:`mmseg_saot.ot.sinkhorn` on
    :math:`C_b = 1 - \\cos(\\phi(x), \\phi(y))`; the soft labels are
    :math:`\\hat Y_b = \\mathrm{diag}(P_b^\\top \\mathbf 1)^{-1} P_b^\\top Y_b` and the
    loss is :math:`-\\frac{1}{B M}\\sum_{b,j} \\log \\hat Y_{b, j, y_j}`.

    Args:
        src, tgt: ``(B, N, D)`` and ``(B, M, D)`` features of labelled patches.
        src_lab, tgt_lab: ``(B, N)`` and ``(B, M)`` labels in ``[0, num_classes)``.

    Returns:
        Scalar loss, differentiable w.r.t. the metric's parameters.
    """
    cost = cosine_cost(metric(src), metric(tgt))  # (B, n, m)
    plan = sinkhorn(cost, epsilon=epsilon, rho=rho, num_iters=num_iters, tol=tol,
                    warn=False).plan  # (B, N, M)
    onehot = F.one_hot(src_lab, num_classes).to(plan.dtype)  # (B, N, C)
    votes = plan.transpose(1, 2) @ onehot  # (B, M, C)
    probs = votes / votes.sum(-1, keepdim=True).clamp_min(1e-30)
    picked = probs.gather(-1, tgt_lab.unsqueeze(-1)).squeeze(-1)
    return -torch.log(picked.clamp_min(1e-8)).mean()


def train_metric(metric: LowRankMetric,
                 feats: torch.Tensor,
                 labels: torch.Tensor,
                 num_classes: int,
                 *,
                 steps: int = 300,
                 pairs_per_step: int = 4,
                 patches_per_image: int = 256,
                 lr: float = 1e-2,
                 weight_decay: float = 0.0,
                 epsilon: float = 0.05,
                 rho: Union[float, Tuple[float, float]] = math.inf,
                 seed: int = 0,
                 ignore_index: int = 255) -> MetricTrainingLog:
    """Fit ``metric`` on labelled source images by OT label transfer between image pairs.

    Each step draws ``pairs_per_step`` ordered pairs of distinct source images,
    ``patches_per_image`` labelled patches of each, and takes one Adam step on
    :func:`transfer_loss`. Deterministic for a given ``seed`` (own generator; the
    solver is deterministic on CPU).

    Args:
        metric: the metric to train in place.
        feats: ``(S, P, D)`` source patch features (S >= 2 images with labels).
        labels: ``(S, P)`` patch labels, ``ignore_index`` for unlabelled patches.
        num_classes: number of classes C.
        steps, pairs_per_step, patches_per_image, lr, weight_decay: optimisation.
        epsilon, rho: OT parameters of the transfer (cost units, see ``sinkhorn``).
        seed: seed of the pair and patch sampling.

    Returns:
        :class:`MetricTrainingLog` with the loss of every step.

    Raises:
        ValueError: fewer than two images with labelled patches.
    """
    usable = ((labels != ignore_index).sum(1) > 0).nonzero()[:, 0]
    if usable.numel() < 2:
        raise ValueError('train_metric: needs at least two source images with labelled '
                         f'patches, got {usable.numel()} (all other labels are ignore).')
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(metric.parameters(), lr=lr, weight_decay=weight_decay)
    log = MetricTrainingLog()
    t0 = time.perf_counter()
    metric.train()
    with torch.enable_grad():  # whatever the caller's mode (a fit under torch.no_grad())
        for _ in range(steps):
            batch = [_draw_pair(usable, gen) for _ in range(pairs_per_step)]
            idx = [(sample_valid_patches(labels[s], patches_per_image, gen, ignore_index),
                    sample_valid_patches(labels[t], patches_per_image, gen, ignore_index))
                   for s, t in batch]
            src = torch.stack([feats[s][i] for (s, _), (i, _) in zip(batch, idx)])
            tgt = torch.stack([feats[t][j] for (_, t), (_, j) in zip(batch, idx)])
            src_lab = torch.stack([labels[s][i] for (s, _), (i, _) in zip(batch, idx)]).long()
            tgt_lab = torch.stack([labels[t][j] for (_, t), (_, j) in zip(batch, idx)]).long()
            loss = transfer_loss(metric, src, src_lab, tgt, tgt_lab, num_classes,
                                 epsilon=epsilon, rho=rho)
            opt.zero_grad()
            loss.backward()
            opt.step()
            log.losses.append(float(loss.detach()))
    metric.eval()
    log.seconds = time.perf_counter() - t0
    return log


def _draw_pair(usable: torch.Tensor, gen: torch.Generator) -> Tuple[int, int]:
    perm = torch.randperm(usable.numel(), generator=gen)[:2]
    return int(usable[perm[0]]), int(usable[perm[1]])
