"""Label transfer from source to target points: by a transport plan, and baselines.

* :func:`transfer_labels`: soft target labels :math:`\\hat Y = \\mathrm{diag}(1/m)\\,P^\\top Y`
  from a plan (or a :class:`SinkhornResult`, block by block without a dense plan),
  with :math:`Y` the one-hot source labels and :math:`m = P^\\top Y \\mathbf 1` the mass
  each target receives from *labelled* sources.
* :func:`nn_transfer`: hard cosine 1-nearest-neighbour labels.
* :func:`knn_transfer`: Hummingbird-style soft labels (Balazevic et al. 2023,
  "Towards in-context scene understanding"): softmax of cosine / T over the k
  nearest labelled sources.

Sources whose label is ``ignore_index`` never vote. The baselines work on
``chunk_size x chunk_size`` similarity blocks, so N x M never has to fit.
"""
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F

from ._loop import cpu_threads
from ._matvec import matmul_fp32
from ._validation import check_feature_pair, check_features, check_positive_int, check_real
from .costs import rows_per_block
from .block_sparse import BlockSparseResult
from .result import SinkhornResult


@dataclass
class LabelTransfer:
    """Soft labels of M target points over C classes.

    Attributes:
        probs: ``(M, C)`` class probabilities; all-zero rows for targets that received no
            labelled mass.
        confidence: ``(M,)`` max probability (0 where no mass).
        labels: ``(M,)`` argmax class, ``ignore_index`` where no mass.
        mass: ``(M,)`` mass received from labelled sources (plan units; for kNN the sum of
            the neighbour weights, 1, or 0 if there is no labelled source).
    """

    probs: torch.Tensor
    confidence: torch.Tensor
    labels: torch.Tensor
    mass: torch.Tensor


@dataclass
class NNTransfer:
    """Hard 1-NN labels: ``labels`` (M,), cosine ``similarity`` (M,), source ``index`` (M,)."""

    labels: torch.Tensor
    similarity: torch.Tensor
    index: torch.Tensor


def _one_hot(source_labels: torch.Tensor, num_classes: int, ignore_index: int,
             dtype: torch.dtype) -> torch.Tensor:
    """``(N, C)`` one-hot labels with all-zero rows for ignored sources."""
    if source_labels.dim() != 1:
        raise ValueError(f'`source_labels` must have shape (N,), got '
                         f'{tuple(source_labels.shape)}.')
    if source_labels.dtype.is_floating_point:
        raise TypeError('`source_labels` must be an integer tensor, got '
                        f'{source_labels.dtype}; pass class indices (e.g. labels.long()).')
    valid = source_labels != ignore_index
    bad = valid & ((source_labels < 0) | (source_labels >= num_classes))
    if bool(bad.any()):
        raise ValueError(f'`source_labels` must lie in [0, {num_classes}) or equal '
                         f'ignore_index={ignore_index}.')
    onehot = F.one_hot(torch.where(valid, source_labels, 0).long(), num_classes).to(dtype)
    return onehot * valid.unsqueeze(1).to(dtype)


def _finish(votes: torch.Tensor, ignore_index: int) -> LabelTransfer:
    mass = votes.sum(1)
    has_mass = mass > 0
    probs = votes / torch.where(has_mass, mass, torch.ones_like(mass)).unsqueeze(1)
    confidence, labels = probs.max(1)
    labels = torch.where(has_mass, labels, torch.full_like(labels, ignore_index))
    return LabelTransfer(probs=probs, confidence=confidence, labels=labels, mass=mass)


def transfer_labels(plan_or_result: Union[torch.Tensor, SinkhornResult, BlockSparseResult],
                    source_labels: torch.Tensor,
                    num_classes: int,
                    *,
                    ignore_index: int = 255,
                    chunk_size: Optional[int] = None) -> LabelTransfer:
    """Transfer source labels through a transport plan.

    .. math::
        \\hat Y_{jc} = \\frac{\\sum_i P_{ij} [y_i = c]}{\\sum_i P_{ij} [y_i \\ne \\text{ignore}]}.

    Differentiable w.r.t. the plan, hence (through :func:`sinkhorn`'s implicit
    gradient) w.r.t. the cost: cross-entropy on ``probs`` trains a metric.

    Args:
        plan_or_result: ``(N, M)`` plan; an unbatched :class:`SinkhornResult`, whose plan
            is rebuilt in row blocks from its potentials and cost (never whole); or a
            :class:`BlockSparseResult` (votes from its support blocks).
        source_labels: ``(N,)`` integer labels in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes C.
        ignore_index: label of sources that must not vote.
        chunk_size: source rows per block of a plan or result (default: blocks of
            ~64 MB of fp32); a :class:`BlockSparseResult` goes by its support blocks.

    Returns:
        :class:`LabelTransfer` with ``probs`` (M, C), ``confidence``, ``labels``, ``mass``.
    """
    if chunk_size is not None:
        chunk_size = check_positive_int('chunk_size', chunk_size)
    if isinstance(plan_or_result, BlockSparseResult):
        result = plan_or_result
        n_src, n_tgt = result.f.shape[0], result.g.shape[0]
        if source_labels.shape[0] != n_src:
            raise ValueError(f'`source_labels` has {source_labels.shape[0]} entries but the '
                             f'result has N = {n_src} sources.')
        onehot = _one_hot(source_labels.to(result.f.device), num_classes, ignore_index,
                          result.f.dtype)
        # One batched product per chunk of target blocks: padded sources (index N) get a
        # zero one-hot row, padded target slots (index M) a discarded votes row; target
        # blocks partition the targets, so the scatter writes each row once.
        onehot = torch.cat([onehot, onehot.new_zeros((1, num_classes))])
        votes = result.f.new_zeros((n_tgt + 1, num_classes))
        # Batched products over ~20 blocks each: torch's threads (0.06 s against 0.1 s
        # on one thread at SAOT's working point, 2-core EPYC).
        with cpu_threads(result.f.device, None):
            for tgt, _, block, hot in result.support_batches(col_values=onehot):
                votes.index_add_(0, tgt.reshape(-1),
                                 torch.bmm(block, hot).reshape(-1, num_classes))
        votes = votes[:n_tgt]
        return _finish(votes, ignore_index)
    if isinstance(plan_or_result, SinkhornResult):
        result = plan_or_result
        if result.f.dim() != 1:
            raise ValueError('transfer_labels takes an unbatched result; index the batch '
                             'and solve per problem, or pass a (N, M) plan.')
        num_rows, num_cols = result.shape
        onehot = _one_hot(source_labels.to(result.f.device), num_classes, ignore_index,
                          result.f.dtype)
        blocks = ((i0, i1, blk[0]) for i0, i1, blk in result.plan_blocks(chunk_size))
    else:
        plan = plan_or_result
        _check_plan(plan)
        num_rows, num_cols = plan.shape
        dtype = torch.float64 if plan.dtype == torch.float64 else torch.float32
        onehot = _one_hot(source_labels.to(plan.device), num_classes, ignore_index, dtype)
        step = chunk_size or rows_per_block(plan.shape[1])  # an fp16 plan is cast by blocks
        blocks = ((i0, min(i0 + step, num_rows), plan[i0:i0 + step].to(dtype))
                  for i0 in range(0, num_rows, step))
    if source_labels.shape[0] != num_rows:
        raise ValueError(f'`source_labels` has {source_labels.shape[0]} entries but the plan '
                         f'has N = {num_rows} source rows.')
    votes = onehot.new_zeros((num_cols, num_classes))  # no source (N = 0): all ignore
    for i0, i1, block in blocks:
        votes = votes + block.t() @ onehot[i0:i1]
    return _finish(votes, ignore_index)


def _check_plan(plan: torch.Tensor) -> None:
    """Check a ``(N, M)`` plan: floating point, non-negative."""
    if not torch.is_floating_point(plan):
        raise ValueError(f'`plan` must be a floating point tensor (a transport plan), got '
                         f'{plan.dtype}; pass the solver result or its `.plan`.')
    if plan.dim() != 2:
        raise ValueError(f'`plan` must have shape (N, M), got {tuple(plan.shape)}.')
    if not bool(torch.isfinite(plan.detach()).all()):
        raise ValueError('`plan` has non-finite entries (NaN or inf); a transport plan is '
                         'finite: check the solve that produced it (its cost and epsilon).')
    if bool((plan.detach() < 0).any()):
        raise ValueError('`plan` must be non-negative; a transport plan has entries >= 0 '
                         '(got negative entries).')


def _labelled(source_feats, source_labels, ignore_index):
    check_features('source_feats', source_feats)
    if source_labels.shape != (source_feats.shape[0],):
        raise ValueError(f'`source_labels` must have shape ({source_feats.shape[0]},), got '
                         f'{tuple(source_labels.shape)}.')
    if source_labels.dtype.is_floating_point:
        raise TypeError('`source_labels` must be an integer tensor, got '
                        f'{source_labels.dtype}; pass class indices (e.g. labels.long()).')
    # labels on the features' device: CUDA neighbour indices cannot index CPU labels
    source_labels = source_labels.to(source_feats.device)
    keep = source_labels != ignore_index
    return F.normalize(source_feats[keep], dim=1), source_labels[keep], keep.nonzero()[:, 0]


def nn_transfer(source_feats: torch.Tensor,
                source_labels: torch.Tensor,
                target_feats: torch.Tensor,
                *,
                ignore_index: int = 255,
                chunk_size: int = 4096) -> NNTransfer:
    """Hard cosine 1-nearest-neighbour label transfer among labelled sources.

    Args:
        source_feats: ``(N, D)`` source features.
        source_labels: ``(N,)`` integer labels (``ignore_index`` sources are skipped).
        target_feats: ``(M, D)`` target features.
        ignore_index: label of sources that must not vote.
        chunk_size: similarity blocks are at most ``chunk_size x chunk_size``.

    Returns:
        :class:`NNTransfer`: labels, cosine similarity to the neighbour, and its index
        into the original sources. If no source is labelled: labels ``ignore_index``,
        similarity ``-inf`` and index ``-1`` (a sentinel, not a Python index: it would
        pick the last source).
    """
    chunk_size = check_positive_int('chunk_size', chunk_size)
    src, lab, idx = _labelled(source_feats, source_labels, ignore_index)
    check_feature_pair(source_feats, target_feats, 'source_feats', 'target_feats')
    tgt = F.normalize(target_feats, dim=1)
    num_t = tgt.shape[0]
    best = torch.full((num_t,), -float('inf'), device=tgt.device)
    arg = torch.zeros(num_t, dtype=torch.long, device=tgt.device)
    for t0 in range(0, num_t, chunk_size):
        t1 = min(t0 + chunk_size, num_t)
        for s0 in range(0, src.shape[0], chunk_size):
            sim = matmul_fp32(tgt[t0:t1], src[s0:s0 + chunk_size].t()).float()
            val, pos = sim.max(1)
            better = val > best[t0:t1]
            best[t0:t1] = torch.where(better, val, best[t0:t1])
            arg[t0:t1] = torch.where(better, pos + s0, arg[t0:t1])
    if src.shape[0] == 0:
        labels = torch.full((num_t,), ignore_index, dtype=source_labels.dtype,
                            device=tgt.device)
        return NNTransfer(labels=labels, similarity=best, index=torch.full_like(arg, -1))
    return NNTransfer(labels=lab[arg], similarity=best, index=idx[arg])


def knn_transfer(source_feats: torch.Tensor,
                 source_labels: torch.Tensor,
                 target_feats: torch.Tensor,
                 num_classes: int,
                 *,
                 k: int = 30,
                 temperature: float = 0.02,
                 ignore_index: int = 255,
                 chunk_size: int = 4096) -> LabelTransfer:
    """Soft kNN label transfer: softmax of cosine / T over the k nearest labelled sources.

    .. math::
        \\hat Y_{jc} = \\sum_{i \\in \\mathrm{kNN}(j)} \\frac{e^{\\cos(x_i, y_j)/T}}
        {\\sum_{i' \\in \\mathrm{kNN}(j)} e^{\\cos(x_{i'}, y_j)/T}} [y_i = c].

    Hummingbird's defaults k = 30, T = 0.02. As T -> 0 this is 1-NN; it is also the
    ``rho -> 0`` limit of unbalanced OT restricted to the k neighbours, with
    ``T = epsilon``.

    Args:
        source_feats, source_labels, target_feats: as in :func:`nn_transfer`.
        num_classes: number of classes C.
        k: neighbours (clipped to the number of labelled sources).
        temperature: softmax temperature T on cosine similarities (> 0).
        ignore_index: label of sources that must not vote.
        chunk_size: similarity blocks are at most ``chunk_size x chunk_size``; the top-k
            is merged across source blocks.

    Returns:
        :class:`LabelTransfer`.
    """
    if not check_real('temperature', temperature) > 0:
        raise ValueError(f'`temperature` must be > 0, got {temperature}.')
    k = check_positive_int('k', k)
    chunk_size = check_positive_int('chunk_size', chunk_size)
    src, lab, _ = _labelled(source_feats, source_labels, ignore_index)
    if bool((lab >= num_classes).any() or (lab < 0).any()):  # all, not the chosen ones
        raise ValueError(f'`source_labels` must lie in [0, {num_classes}) or equal '
                         f'ignore_index={ignore_index}.')
    check_feature_pair(source_feats, target_feats, 'source_feats', 'target_feats')
    tgt = F.normalize(target_feats, dim=1)
    num_t = tgt.shape[0]
    k = min(int(k), src.shape[0])
    votes = torch.zeros(num_t, num_classes, device=tgt.device)
    if k == 0:
        return _finish(votes, ignore_index)
    for t0 in range(0, num_t, chunk_size):
        t1 = min(t0 + chunk_size, num_t)
        top_val = top_idx = None
        for s0 in range(0, src.shape[0], chunk_size):
            sim = matmul_fp32(tgt[t0:t1], src[s0:s0 + chunk_size].t()).float()
            val, pos = sim.topk(min(k, sim.shape[1]), dim=1)
            pos = pos + s0
            if top_val is not None:
                merged = torch.cat([top_val, val], 1)
                val, sel = merged.topk(min(k, merged.shape[1]), dim=1)
                pos = torch.cat([top_idx, pos], 1).gather(1, sel)
            top_val, top_idx = val, pos
        weights = torch.softmax(top_val / temperature, dim=1)
        classes = lab[top_idx].long()
        votes[t0:t1].scatter_add_(1, classes, weights)
    return _finish(votes, ignore_index)
