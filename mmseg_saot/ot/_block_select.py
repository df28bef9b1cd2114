"""Choose the kept (source block, target block) pairs (block-sparse step 2).

See :mod:`mmseg_saot.ot.block_sparse` for the selection rules (coverage, truncation,
top-k, all) and the semi-coarse problem they are estimated from.
"""
import math

import torch

from .sinkhorn import sinkhorn

def _block_weights(weights: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    """``(num_blocks, block)`` weights of the block members, 0 for padding."""
    return torch.cat([weights, weights.new_zeros(1)])[blocks]


def _block_mass(weights: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
    return _block_weights(weights, blocks).sum(1)


def _select(coarse, mass_src, b_slots, selection, epsilon, rho_pair, theta, coverage, topk,
            min_blocks, slots_per_block):
    """``(I, J)`` bool mask of kept (source block, target block) pairs.

    ``coarse`` is the ``(I, T * bt)`` cost between source blocks and target *slots*
    (points in block order; padding slots have zero mass in ``b_slots``).
    """
    num_i = coarse.shape[0]
    num_j = coarse.shape[1] // slots_per_block
    if selection == 'all':
        return torch.ones(num_i, num_j, dtype=torch.bool, device=coarse.device)
    real = (b_slots > 0).view(num_j, slots_per_block)
    if selection in ('coverage', 'truncation'):
        # Semi-coarse problem: source blocks (mass A_I, block-average cost) against single
        # targets. Its plan A_I b_j exp((F_I + g_j - C_Ij)/eps) says where target j's
        # mass comes from; keep, for each target, the source blocks within a factor
        # e^theta of its best one (g_j and b_j cancel), then take the union over the
        # targets of a block: mixed target blocks keep what each of their targets needs.
        # (checks every 5 iterations: it stops up to 9 iterations sooner than every 10)
        res = sinkhorn(coarse, mass_src, b_slots, epsilon=epsilon, rho=rho_pair, tol=1e-5,
                       num_iters=2000, check_every=5, warn=False)
        score = torch.log(mass_src)[:, None] + (res.f[:, None] - coarse) / epsilon
        score = score - score.amax(dim=0, keepdim=True)
        if selection == 'truncation':
            wanted = score > -theta
        else:
            wanted = _coverage_mask(score, coverage)
    else:
        score = -coarse
        wanted = torch.zeros_like(coarse, dtype=torch.bool)
        wanted.scatter_(0, score.topk(min(int(topk), num_i), dim=0).indices, True)
    wanted = wanted.view(num_i, num_j, slots_per_block) & real[None]
    keep = wanted.any(-1)
    block_score = torch.where(real[None], score.view(num_i, num_j, slots_per_block),
                              torch.full_like(score.view(num_i, num_j, slots_per_block),
                                              -math.inf)).amax(-1)
    k_min = min(max(1, int(min_blocks)), num_i)
    keep.scatter_(0, block_score.topk(k_min, dim=0).indices, True)  # per target block
    keep[torch.arange(num_i), block_score.argmax(1)] = True  # every source block somewhere
    return keep


def _coverage_mask(score, coverage, first_k: int = 32):
    """Per column, the fewest rows whose ``softmax(score)`` shares sum to ``coverage``.

    Args:
        score: ``(I, T)`` log-shares (up to a per-column constant).
        coverage: share to reach, in (0, 1].
        first_k: rows ranked by a partial sort (top-k) for every column; the columns
            whose top ``first_k`` rows do not reach ``coverage`` are fully sorted.

    Returns:
        ``(I, T)`` bool mask: row i is kept in column t if the rows ranked above it
        carry less than ``coverage``.
    """
    share = torch.softmax(score.t(), dim=1)  # (T, I): ranking along contiguous rows
    mask = torch.zeros_like(share, dtype=torch.bool)
    # Partial sort: at SAOT's working point most targets need ~5-15 of 343 source
    # blocks; rows ranked below the top k are never kept where the top k reach the
    # coverage (the share of the rows above them is then >= coverage).
    top, order = share.topk(min(first_k, share.shape[1]), dim=1)
    before = top.cumsum(1) - top  # share of the better-ranked rows
    mask.scatter_(1, order, before < coverage)
    short = (before[:, -1] + top[:, -1] < coverage).nonzero()[:, 0]  # diffuse targets
    if short.numel():
        full, order = share[short].sort(dim=1, descending=True)
        before = full.cumsum(1) - full
        mask[short] = torch.zeros_like(full, dtype=torch.bool).scatter_(1, order,
                                                                        before < coverage)
    return mask.t()


def check_support_carries_balanced(keep: torch.Tensor, mass_src: torch.Tensor,
                                   mass_tgt: torch.Tensor, rho_pair) -> None:
    """Raise ``ValueError`` when a balanced problem has no plan on the kept blocks.

    With ``rho = inf`` every block must send (receive) all its mass through the blocks it
    is joined to, so its mass may not exceed theirs in all (Hall's condition for single
    blocks: necessary, and what a too-sparse ``topk`` breaks). Without this check the
    solve ran to ``num_iters`` and advised more iterations, which cannot help.

    Args:
        keep: ``(I, J)`` bool mask of kept (source block, target block) pairs.
        mass_src: ``(I,)`` source block masses.
        mass_tgt: ``(J,)`` target block masses.
        rho_pair: ``(rho_a, rho_b)``; checked only when both are infinite.
    """
    if not (math.isinf(rho_pair[0]) and math.isinf(rho_pair[1])):
        return
    joined = keep.to(mass_src.dtype)
    slack = 1e-6 * float(mass_src.sum())
    for side, mass, reach in (('target', mass_tgt, joined.t() @ mass_src),
                              ('source', mass_src, joined @ mass_tgt)):
        short = mass - reach
        worst = int(short.argmax())
        if float(short[worst]) > slack:
            raise ValueError(
                f'block_sparse_sinkhorn: the selected block support cannot carry balanced '
                f'marginals: {side} block {worst} holds mass {float(mass[worst]):.4g} but '
                f'the blocks it is joined to hold only {float(reach[worst]):.4g} in all, so '
                f'no plan on this support has the marginals rho=inf asks for. Keep more '
                f"block pairs (raise `topk`, `min_blocks` or `coverage`, or selection='all'), "
                f'or pass a finite `rho` for unbalanced OT.')
