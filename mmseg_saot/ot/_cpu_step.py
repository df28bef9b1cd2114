"""One Sinkhorn iteration on a stored CPU kernel, in numpy, in a single pass over its rows.

The f half-step is local to a row, so each row block ``K_R`` of the kernel serves
``K_R (b e^{g/eps})`` for the f-update of its rows and then, still in cache,
accumulates ``K_R^T (a e^{f_new/eps})`` for the g-update: the kernel is read from
memory once per iteration instead of twice. Source weights are shifted by a running
maximum (the partial sum is rescaled when it grows), as in an online softmax.

:class:`CpuIteration` is to the CPU what ``_fused_step.FusedIteration`` is to a GPU:
the loop hands it the whole iteration (both half-steps and the translation steps),
with the numerics of ``_loop._eager_iteration``. All of it runs on numpy views of
fp64 potentials: the products through numpy's BLAS (see ``_matvec.py``), the vector
work in place in preallocated buffers. A numpy call on a few hundred rows costs
~1 us against ~8 us for a torch op, and the first ops after a pass over the kernel
run on cold caches: at N = M = 4096 the translation steps and updates as torch ops
took 0.3 ms of a 3.5 ms iteration (2-core AMD EPYC).

Per row block the work is two products and seven vector calls: every term of the
block's source-weight exponent that does not depend on the product is formed for all
rows before the pass (``_exponent_offsets``), and the new f is formed from the
saved logs of the row sums after it.
"""
import math
from typing import Optional, Tuple

import torch

from ._acceleration import RelaxedUpdate
from ._marginal_error import row_violation
from ._matvec import np
from ._operators import KernelOperator
from .costs import rows_per_block

# ``ENABLED['one_pass'] = False``: the loop runs the eager iteration (two products).
ENABLED = {'one_pass': True}
# Bytes of fp32 kernel per row block: they stay in the last-level cache between their
# two uses (measured best at 4-8 MB on a 32 MB-L3 EPYC).
BLOCK_BYTES = 1 << 23


def usable(op) -> bool:
    """Whether ``op`` can run here: a stored kernel on CPU, fp64 potentials, numpy."""
    return (ENABLED['one_pass'] and np is not None and isinstance(op, KernelOperator)
            and op.kernel.device.type == 'cpu' and op.kernel.dim() == 3
            and op.log_a.dtype == torch.float64 and op.log_b.dtype == torch.float64)


class _Buffers:
    """Scratch space of a batch of ``batch`` kernels with ``num_rows`` rows and
    ``num_cols`` columns, passed in blocks of ``rows`` rows."""

    def __init__(self, rows: int, batch: int, num_rows: int, num_cols: int,
                 mv_dtype: torch.dtype, upcast: bool):
        np_mv = np.float64 if mv_dtype == torch.float64 else np.float32
        self.upcast = torch.empty((rows, num_cols), dtype=mv_dtype) if upcast else None
        self.sums = np.empty(rows, dtype=np_mv)        # K_R w, in the product dtype
        self.work = np.empty(rows, dtype=np.float64)   # exponents of the source weights
        self.source_weights = np.empty(rows, dtype=np_mv)  # a e^{f_new/eps}, shifted
        self.part = np.empty(num_cols, dtype=np_mv)    # K_R^T of the weights
        self.acc = np.empty((batch, num_cols), dtype=np_mv)  # sums over blocks, shifted
        self.shifts = np.empty(batch, dtype=np.float64)      # their shifts
        self.log_sums = np.empty((batch, num_rows), dtype=np.float64)  # log K w, all rows
        self.offsets = np.empty((batch, num_rows), dtype=np.float64)   # _exponent_offsets


class CpuIteration:
    """One Sinkhorn iteration of ``_loop._run`` on ``op``'s stored CPU kernel.

    Args:
        op: the :class:`KernelOperator` (its kernel ``(B, N, M)``, references
            ``f_hat`` (B, N), ``g_hat`` (B, M) and log weights are read, never written).
        rho_a, rho_b: marginal penalties (``inf``: balanced side).

    Attributes:
        rows: rows per block of the pass (``BLOCK_BYTES`` of fp32 kernel).
    """

    def __init__(self, op: KernelOperator, rho_a: float, rho_b: float):
        self.op = op
        self.rho_a, self.rho_b = rho_a, rho_b
        _, num_rows, num_cols = op.kernel.shape
        self.rows = min(num_rows, max(16, rows_per_block(num_cols, BLOCK_BYTES)))
        self._buffers = None

    @classmethod
    def create(cls, op, rho_a: float, rho_b: float) -> Optional['CpuIteration']:
        """An iteration for ``op``, or None where ``usable(op)`` is false."""
        return cls(op, rho_a, rho_b) if usable(op) else None

    def _scratch(self) -> _Buffers:
        upcast = self.op.kernel.dtype != self.op.mv_dtype
        key = (self.rows, *self.op.kernel.shape, self.op.mv_dtype, upcast)
        if self._buffers is None or self._buffers[0] != key:
            self._buffers = (key, _Buffers(*key))
        return self._buffers[1]

    def iterate(self, f: torch.Tensor, g: torch.Tensor, eps: float, tau_a: float, tau_b: float,
                omega: float, use_ti: bool, translation, measure: bool
                ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor],
                           Optional[torch.Tensor]]:
        """One iteration: f half-step, translation, g half-step, translation.

        Args:
            f, g: ``(B, N)``, ``(B, M)`` fp64 CPU potentials (not modified).
            eps, tau_a, tau_b, omega: epsilon, the two ``rho / (rho + eps)`` and the
                over-relaxation factor (1: plain steps).
            use_ti: apply the translation-invariant step; ``translation`` is the loop's
                ``Translation`` (its cache is left as numpy arrays).
            measure: also return the row and column marginal violations of this
                iterate, ``(B,)`` fp64 each (else None, None), as the eager iteration.

        Returns:
            ``(f, g, row violation, column violation)``.
        """
        op = self.op
        f_np, g_np = f.numpy(), g.numpy()
        # A row or column whose kernel underflowed gives log 0 = -inf (and then inf - inf):
        # as in torch, without numpy's warnings; the loop sees the non-finite potential
        # and hands the solve to the log-domain rescue.
        with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
            f_new, t, smin = self._f_half_step(f_np, g_np, eps, RelaxedUpdate(tau_a, omega),
                                               measure)
            viol_a = (row_violation(f, torch.from_numpy(smin), op.log_a, eps, self.rho_a)
                      if measure else None)
            if use_ti:
                f_new, g_np, lam = translation.after_f(f_new, g_np)
                t -= lam  # smin_b(f + lam) = smin_b(f) - lam
            viol_b = (row_violation(torch.from_numpy(g_np), torch.from_numpy(t), op.log_b,
                                    eps, self.rho_b) if measure else None)
            g_new = np.empty_like(g_np)
            RelaxedUpdate(tau_b, omega).into(g_np, t, g_new)
            if use_ti:
                f_new, g_new, _ = translation.after_g(f_new, g_new)
        return torch.from_numpy(f_new), torch.from_numpy(g_new), viol_a, viol_b

    def _f_half_step(self, f_np, g_np, eps: float, update: RelaxedUpdate, measure: bool):
        """The f half-step of the batch: ``(f_new, smin_b(f_new), smin_a(g) or None)``,
        new ``(B, N)``, ``(B, M)`` and ``(B, N)`` fp64 arrays."""
        op = self.op
        bufs = self._scratch()
        w, m = _target_weights(op, g_np, bufs.source_weights.dtype, eps)
        fh_np = op.f_hat.numpy()
        _exponent_offsets(f_np, fh_np, op.log_a.numpy(), m, eps, update, bufs.offsets)
        slope = -update.omega * update.tau
        for i in range(f_np.shape[0]):
            bufs.shifts[i] = self._one_pass(i, w[i], slope, bufs)
        # smin_a(g) = f_hat - eps (log K w + m); f_new = update(f, smin_a(g))
        smin = bufs.log_sums
        smin += m[:, None]
        smin *= -eps
        smin += fh_np
        smin_out = smin.copy() if measure else None
        f_new = np.empty_like(f_np)
        update.into(f_np, smin, f_new)
        # smin_b(f_new) = g_hat - eps (log acc + shift); empty column: log 0 = -inf
        t = np.log(bufs.acc, dtype=np.float64)
        t += bufs.shifts[:, None]
        t *= -eps
        t += op.g_hat.numpy()
        return f_new, t, smin_out

    def _one_pass(self, i: int, w_i, slope: float, bufs: _Buffers) -> float:
        """The pass over the kernel rows of batch element ``i``: log row sums into
        ``bufs.log_sums[i]``, shifted column sums into ``bufs.acc[i]``; returns the
        shift."""
        kernel = self.op.kernel
        num_rows = kernel.shape[1]
        rows_np = None if bufs.upcast is not None else kernel[i].numpy()
        offsets, log_sums_i, acc = bufs.offsets[i], bufs.log_sums[i], bufs.acc[i]
        shift = -math.inf
        acc.fill(0.0)
        for r0 in range(0, num_rows, self.rows):
            r1 = min(r0 + self.rows, num_rows)
            n = r1 - r0
            if rows_np is None:
                block = bufs.upcast[:n].copy_(kernel[i, r0:r1]).numpy()
            else:
                block = rows_np[r0:r1]
            sums, work, log_sums = bufs.sums[:n], bufs.work[:n], log_sums_i[r0:r1]
            np.dot(block, w_i, out=sums)
            np.log(sums, out=log_sums, dtype=np.float64)
            # exponent of a e^{(f_new - f_hat)/eps}: slope log K_R w + offsets
            np.multiply(log_sums, slope, out=work)
            work += offsets[r0:r1]
            blk_max = float(work.max())
            if blk_max == -math.inf:  # every row of zero weight: nothing to add
                continue
            if blk_max > shift:
                if math.isfinite(shift):
                    acc *= math.exp(shift - blk_max)
                shift = blk_max
            work -= shift
            source_weights = bufs.source_weights[:n]
            np.exp(work, out=source_weights, casting='same_kind')
            np.dot(source_weights, block, out=bufs.part)
            acc += bufs.part
        return shift


def _exponent_offsets(f_np, fh_np, la_np, m, eps: float, update: RelaxedUpdate, out):
    """The terms of ``(f_new - f_hat)/eps + log a`` that do not depend on the product,
    ``(B, N)``, with ``m`` the ``(B,)`` shifts of the target weights.

    With ``s = K w`` and ``smin = f_hat - eps (log s + m)``, the relaxed update
    ``f_new = (1 - omega) f + omega tau smin`` gives
    ``(f_new - f_hat)/eps + log a = -omega tau log s + out``, where
    ``out = (1 - omega) f/eps + (omega tau - 1) f_hat/eps - omega tau m + log a``.
    The ``f`` term is left out when omega = 1, as in ``RelaxedUpdate``.
    """
    slope = update.omega * update.tau
    np.multiply(fh_np, (slope - 1.0) / eps, out=out)
    out += la_np
    out -= slope * m[:, None]
    if update.omega != 1.0:
        out += f_np * ((1.0 - update.omega) / eps)


def _target_weights(op, g_np, dtype, eps: float):
    """``b e^{(g - g_hat)/eps}`` over the M targets of each problem, shifted by its
    maximum: the right-hand sides ``(B, M)`` of the row products in the product dtype,
    and the ``(B,)`` shifts."""
    z = np.subtract(g_np, op.g_hat.numpy())
    z /= eps
    z += op.log_b.numpy()
    m = z.max(-1)
    z -= m[:, None]
    np.exp(z, out=z)
    return z.astype(dtype), m
