"""When a stored kernel is absorbed into or rebuilt from the cost (the refresh policy).

A stored-kernel operator (:class:`~._operators.KernelOperator`, the block-sparse
:class:`~._block_operators.BlockKernelOperator`) keeps ``K = exp((f_hat + g_hat - C) /
eps)`` around reference potentials. At each check window the loop asks it to refresh:
nothing while the potentials stay near the references, an in-place absorption of the
scalings when they drift, a rebuild from the cost when entries may have underflowed or
when an entry flushed to zero at the last rebuild could carry mass again.
"""
import math
from typing import Tuple

import torch


# Absorb into the stored kernel when an exponent (f_i + g_j - C_ij)/eps has moved by
# more than this many units since the last absorption (see `drift`). fp16's range
# (6e-8 .. 65504) leaves little headroom.
ABSORB_THRESHOLD = {torch.float64: 200.0, torch.float32: 30.0, torch.bfloat16: 30.0,
                    torch.float16: 6.0}


def drift(f, g, f_ref, g_ref, epsilon) -> torch.Tensor:
    """Largest change, in units of epsilon, of an exponent ``(f_i + g_j - C_ij)/eps``.

    Translation invariant: ``(f + c, g - c)`` leaves the kernel and the drift unchanged,
    so the translation-invariant step alone never forces a rebuild.
    """
    df, dg = f - f_ref, g - g_ref
    hi = df.amax(-1) + dg.amax(-1)
    lo = df.amin(-1) + dg.amin(-1)
    return torch.maximum(hi.abs(), lo.abs()).amax() / epsilon


def growth(f, g, f_hat, g_hat, epsilon) -> torch.Tensor:
    """Largest increase, in units of epsilon, of an exponent since the kernel's references.

    ``max_ij (f_i - f_hat_i + g_j - g_hat_j) / eps`` over the batch: how far above its
    stored value ``log K_ij`` any exponent ``(f_i + g_j - C_ij)/eps`` now lies.
    """
    return ((f - f_hat).amax(-1) + (g - g_hat).amax(-1)).amax() / epsilon


REBUILD_DRIFT = 60.0  # epsilons: beyond this, kernel entries may have underflowed


def _revive_limit(storage_dtype: torch.dtype) -> float:
    # A stored entry below the dtype's smallest normal number (e^-87 in fp32, e^-708 in
    # fp64; subnormals are flushed by some GPU kernels) is lost: absorption multiplies
    # it, and 0 stays 0. Its true value may grow this many e-folds before the flushed
    # mass could exceed e^-17 ~ 4e-8 (fp32 rounding) of the plan's total mass.
    return -math.log(torch.finfo(storage_dtype).tiny) - 17.0


# Absorbing kernels only; half kernels never absorb (every refresh is a rebuild).
REVIVE_LIMIT = {torch.float64: _revive_limit(torch.float64),
                torch.float32: _revive_limit(torch.float32),
                torch.float16: math.inf, torch.bfloat16: math.inf}


def refresh_measures(f, g, op, g_slice=slice(None)) -> Tuple[float, float]:
    """``(drift since the last refresh, growth since the references)``: one device sync."""
    f_ref, g_ref, f_hat, g_hat = op.f_ref, op.g_ref, op.f_hat, op.g_hat
    g, g_ref, g_hat = g[:, g_slice], g_ref[:, g_slice], g_hat[:, g_slice]
    both = torch.stack([drift(f, g, f_ref, g_ref, op.epsilon),
                        growth(f, g, f_hat, g_hat, op.epsilon)])
    moved, grown = both.tolist()
    return moved, grown


def absorb_or_rebuild(op, moved: float, grown: float, f: torch.Tensor,
                      g: torch.Tensor) -> bool:
    """Refresh policy of the stored-kernel operators, given ``refresh_measures``.

    Rebuild from the cost if an entry flushed to zero since the last rebuild may have
    grown back into the plan: ``op.revive`` (how far above ``e^-87`` (fp32) such an
    entry may be, relative to the references, accumulated over absorptions) plus the
    growth ``grown`` since the references exceeds ``REVIVE_LIMIT``. Without this, an
    absorbing kernel at small epsilon keeps iterating on a cost whose flushed entries
    are +inf, while the true plan of its potentials overflows. Otherwise nothing
    below the operator's ``absorb_threshold``; half-precision kernels and very large
    drifts rebuild from the cost; else absorb in place.

    Args:
        op: a stored-kernel operator (``f_hat``, ``g_hat``, ``revive``, ``_rebuild``,
            ``_absorb``, ``storage_dtype``, ``absorb_threshold``).
        moved: ``drift`` since the last refresh, in epsilons.
        grown: ``growth`` since the references, in epsilons.
        f: ``(B, N)`` current source potential; g: ``(B, M)`` target potential.

    Returns:
        True if the kernel was rebuilt or absorbed.
    """
    if op.revive + grown > REVIVE_LIMIT[op.storage_dtype]:
        op._rebuild(f, g)
        return True
    if not moved > op.absorb_threshold:
        return False
    if op.storage_dtype in (torch.float16, torch.bfloat16) or moved > REBUILD_DRIFT:
        op._rebuild(f, g)
    else:
        op._absorb(f, g)
        op.revive = max(0.0, op.revive + grown)
    return True
