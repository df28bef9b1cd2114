"""Block-sparse solver: the opt-in estimate of the mass the support leaves out."""
import math

import torch

def _dropped_mass(feats, keep, src_blocks, tgt_blocks, f, g, a, b, epsilon, samples):
    """Mass on dropped pairs relative to kept mass, for all or ``samples`` random targets.

    Evaluates full cost rows of the chosen targets against all sources (``samples / M``
    of the dense cost) under the final potentials. Returns ``(ratio, worst)``: the
    ratio of dropped to kept mass over the chosen targets, and the largest ratio of
    a single target.
    """
    num_src, num_tgt = f.shape[0], g.shape[0]
    if bool(keep.all()):
        return 0.0, 0.0
    if samples is not None and samples <= 0:
        return math.nan, math.nan
    src_id = _owner(src_blocks, num_src)
    tgt_id = _owner(tgt_blocks, num_tgt)
    if samples is None or samples >= num_tgt:
        targets = torch.arange(num_tgt, device=f.device)
    else:
        gen = torch.Generator(device='cpu').manual_seed(0)
        targets = torch.randperm(num_tgt, generator=gen)[:samples].to(f.device)
    log_a, log_b = torch.log(a), torch.log(b)
    dropped_total = kept_total = 0.0
    worst = 0.0
    step = max(1, (1 << 24) // max(1, num_src))
    for t0 in range(0, targets.shape[0], step):
        tj = targets[t0:t0 + step]
        cost = feats.target_rows(feats._prep(feats.y[tj])).to(f.dtype)  # (t, N)
        mass = torch.exp(log_b[tj, None] + log_a[None, :] + (g[tj, None] + f[None, :] - cost) /
                         epsilon)
        kept = keep[src_id[None, :], tgt_id[tj][:, None]]
        dropped_j = torch.where(kept, torch.zeros_like(mass), mass).sum(1)
        kept_j = torch.where(kept, mass, torch.zeros_like(mass)).sum(1)
        dropped_total += float(dropped_j.sum())
        kept_total += float(kept_j.sum())
        # a target that receives nothing (zero weight) drops nothing: 0, not 0/0 = NaN,
        # which max() would have let hide every other target's ratio
        ratio_j = torch.where(dropped_j > 0,
                              dropped_j / kept_j.clamp_min(torch.finfo(kept_j.dtype).tiny),
                              torch.zeros_like(dropped_j))
        worst = max(worst, float(ratio_j.max()))
    return dropped_total / max(kept_total, 1e-300), worst


def _owner(blocks, n):
    """``(n,)`` block index of every real point."""
    owner = torch.empty(n, dtype=torch.long, device=blocks.device)
    ids = torch.arange(blocks.shape[0], device=blocks.device).repeat_interleave(blocks.shape[1])
    flat = blocks.reshape(-1)
    owner[flat[flat < n]] = ids[flat < n]
    return owner
