"""One Sinkhorn iteration on a stored CPU kernel, in a single pass over its rows.

The f half-step is local to a row, so each row block ``K_R`` of the kernel serves
``K_R (b e^{g/eps})`` for the f-update of its rows and then, still in cache,
accumulates ``K_R^T (a e^{f_new/eps})`` for the g-update: the kernel is read from
memory once per iteration instead of twice. Source weights are shifted by a running
maximum (the partial sum is rescaled when it grows), as in an online softmax.

The products go through numpy's BLAS (see ``_matvec.py``). The O(block) vector work
runs on numpy views of the same memory, in place in preallocated buffers: a numpy
call on a few hundred rows costs ~1 us against ~8 us for a torch op, and a block
needs about fifteen of them.
"""
import math
from typing import Callable, Optional, Tuple

import torch

from ._acceleration import RelaxedUpdate
from ._matvec import np


class _Buffers:
    """Per-call scratch space for blocks of ``rows`` rows and ``num_cols`` columns."""

    def __init__(self, rows: int, num_cols: int, mv_dtype: torch.dtype, upcast: bool):
        np_mv = np.float64 if mv_dtype == torch.float64 else np.float32
        self.upcast = torch.empty((rows, num_cols), dtype=mv_dtype) if upcast else None
        self.sums = np.empty(rows, dtype=np_mv)        # K_R w, in the product dtype
        self.work = np.empty(rows, dtype=np.float64)   # smin, then column exponents
        self.source_weights = np.empty(rows, dtype=np_mv)  # a e^{f/eps} of the block's rows
        self.part = np.empty(num_cols, dtype=np_mv)    # K_R^T of the weights
        self.acc = np.empty(num_cols, dtype=np_mv)     # sum over blocks, shifted


def fused_step(op, f: torch.Tensor, g: torch.Tensor, f_update: Callable,
               violation: Optional[Callable]) -> Tuple[torch.Tensor, torch.Tensor,
                                                       Optional[torch.Tensor]]:
    """``Operator.step`` for a CPU :class:`~._operators.KernelOperator`.

    Args:
        op: the operator (stored ``kernel`` (B, N, M), references ``f_hat``, ``g_hat``,
            ``log_a``, ``log_b``, ``epsilon``, ``mv_dtype``, ``fused_rows``).
        f: ``(B, N)`` fp64 potentials; ``g``: ``(B, M)``.
        f_update: the f half-step; a :class:`RelaxedUpdate` runs on numpy buffers,
            any other callable on torch views of them.
        violation: ``violation(f, smin, log_a) -> (B,)``, or None.

    Returns:
        ``(f_new, smin_b(f_new), row violation or None)``, as ``Operator.step``.
    """
    eps = op.epsilon
    f_new = torch.empty_like(f)
    t_out = torch.empty_like(g)
    viol = torch.zeros(f.shape[0], dtype=f.dtype) if violation is not None else None
    kernel = op.kernel
    upcast = kernel.dtype != op.mv_dtype
    bufs = _Buffers(op.fused_rows, kernel.shape[2], op.mv_dtype, upcast)
    # A row or column whose kernel underflowed gives log 0 = -inf (and then inf - inf):
    # as in torch, without numpy's warnings; the loop sees the non-finite potential
    # and hands the solve to the log-domain rescue.
    with np.errstate(divide='ignore', invalid='ignore'):
        for i in range(f.shape[0]):
            w_i, m_i = _target_weights(op, g[i].numpy(), i, bufs.source_weights.dtype)
            shift = _one_problem(op, i, w_i, m_i, f, f_new, f_update, violation, viol, bufs)
            # smin_b(f_new) = g_hat - eps (log acc + shift); empty column: log 0 = -inf
            t_np = t_out[i].numpy()
            np.log(bufs.acc, out=t_np, dtype=np.float64)
            t_np += shift
            t_np *= -eps
            t_np += op.g_hat[i].numpy()
    return f_new, t_out, viol


def _target_weights(op, g_np, i: int, dtype):
    """``b e^{(g - g_hat)/eps}`` of batch element ``i`` over its M targets, shifted by
    its maximum ``m``: the right-hand side of the row products in the product dtype,
    and ``m``."""
    z = np.subtract(g_np, op.g_hat[i].numpy())
    z /= op.epsilon
    z += op.log_b[i].numpy()
    m = float(z.max())
    z -= m
    np.exp(z, out=z)
    return z.astype(dtype), m


def _one_problem(op, i, w_i, m_i, f, f_new, f_update, violation, viol, bufs) -> float:
    """Run batch element ``i``; leave its shifted column sums in ``bufs.acc`` and
    return the shift."""
    eps = op.epsilon
    num_rows = op.kernel.shape[1]
    f_np, fn_np = f[i].numpy(), f_new[i].numpy()
    fh_np, la_np = op.f_hat[i].numpy(), op.log_a[i].numpy()
    kernel = None if bufs.upcast is not None else op.kernel[i].numpy()
    numpy_update = isinstance(f_update, RelaxedUpdate)
    # the violation is measured once over all rows, from smin_a(g) kept here
    smin_rows = np.empty(num_rows) if viol is not None else None
    shift = -math.inf
    bufs.acc.fill(0.0)
    for r0 in range(0, num_rows, op.fused_rows):
        r1 = min(r0 + op.fused_rows, num_rows)
        n = r1 - r0
        if kernel is None:
            block = bufs.upcast[:n].copy_(op.kernel[i, r0:r1]).numpy()
        else:
            block = kernel[r0:r1]
        sums, work, f_old, f_blk = bufs.sums[:n], bufs.work[:n], f_np[r0:r1], fn_np[r0:r1]
        np.dot(block, w_i, out=sums)
        # smin_a(g) of the block's rows: f_hat - eps (log sums + m)
        np.log(sums, out=work, dtype=np.float64)
        work += m_i
        work *= -eps
        work += fh_np[r0:r1]
        if smin_rows is not None:
            smin_rows[r0:r1] = work
        if numpy_update:
            f_update.into(f_old, work, f_blk)
        else:
            f_blk[...] = f_update(torch.from_numpy(f_old), torch.from_numpy(work)).numpy()
        # source weights a e^{(f_new - f_hat)/eps}, shifted by the running maximum
        np.subtract(f_blk, fh_np[r0:r1], out=work)
        work /= eps
        work += la_np[r0:r1]
        blk_max = float(work.max())
        if blk_max == -math.inf:  # every row of zero weight: nothing to add
            continue
        if blk_max > shift:
            if math.isfinite(shift):
                bufs.acc *= math.exp(shift - blk_max)
            shift = blk_max
        work -= shift
        np.exp(work, out=work)
        source_weights = bufs.source_weights[:n]
        source_weights[...] = work
        np.dot(source_weights, block, out=bufs.part)
        bufs.acc += bufs.part
    if smin_rows is not None:
        viol[i] = violation(f[i], torch.from_numpy(smin_rows), op.log_a[i])
    return shift
