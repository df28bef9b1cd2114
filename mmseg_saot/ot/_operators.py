"""Soft c-transform operators: the only part of Sinkhorn that touches the N x M cost.

Every solver in this package runs the same dual iteration (``_loop.py``) on
potentials ``f`` (B, N) and ``g`` (B, M), in cost units. All it needs is the
soft c-transform (softmin) in both directions,

.. math::
    \\mathrm{smin}_a(g)_i = -\\varepsilon \\log \\sum_j b_j e^{(g_j - C_{ij})/\\varepsilon},
    \\qquad
    \\mathrm{smin}_b(f)_j = -\\varepsilon \\log \\sum_i a_i e^{(f_i - C_{ij})/\\varepsilon},

and an operator supplies it:

* :class:`KernelOperator` (fast path): stores the kernel
  :math:`\\tilde K_{ij} = e^{(\\hat f_i + \\hat g_j - C_{ij})/\\varepsilon}` once, in fp32,
  fp16 or bf16, and evaluates a softmin with one matrix-vector product plus O(N + M)
  work, always accumulating in fp32 (fp64 for fp64 costs). The reference potentials
  :math:`\\hat f, \\hat g` are where the large scalings were last *absorbed*
  (Schmitzer 2019, "Stabilized sparse scaling algorithms"): the scalings
  :math:`e^{(g - \\hat g)/\\varepsilon}` stay O(1) and the stored kernel stays in range.
  A rebuild from the cost takes :math:`\\hat f` = the hard c-transform of
  :math:`\\hat g`, so every row of :math:`\\tilde K` has maximum exactly 1 and no row
  can underflow to zero, whatever the storage dtype; between rebuilds, fp32/fp64
  kernels absorb drifts in place. The loop runs the whole iteration elsewhere where
  it can: on CPU in one pass over the kernel (``_cpu_step.py``), on GPU as five
  Triton launches (``_fused_step.py``); else it takes two products here.
* :class:`LogOperator` (stable fallback): exact chunked ``logsumexp`` over row
  blocks of any cost source, one pass per iteration, never holding more than one
  block; used when the kernel would under/overflow (tiny epsilon) and by the online
  solver.

Potentials and every O(N + M) quantity are fp64 (the solvers' dual dtype); only the
N x M work runs in the storage/cost dtype. When a stored kernel is absorbed or rebuilt
is decided in ``_refresh.py``; marginal errors are measured in ``_marginal_error.py``.
"""
import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Optional

import torch

from ._matvec import cols_matvec, empty_kernel, exp_, rows_matvec
from ._refresh import ABSORB_THRESHOLD, absorb_or_rebuild, refresh_measures
from .costs import DenseCost, rows_per_block


def rebuild_rows(num_rows: int, num_cols: int, batch: int, device_type: str,
                 temporaries: bool) -> int:
    """Rows per chunk of a kernel rebuild or absorption.

    On CPU a chunk is ~8 MB of fp32 so that it stays in the last-level cache. On a
    GPU the chunks only bound the temporaries a pass allocates (64 MB of fp32); a
    pass without any (an in-place fp32/fp64 rebuild from a stored cost of the same
    dtype without masked columns, or an absorption) takes the whole kernel at once:
    each chunk costs some ten kernel launches, and at SAOT's working point (N = 21904,
    M = 2738) 28 chunks of 8 MB made 515 of the labeller's 937 operator calls per
    target (counted on an H200).
    """
    if device_type != 'cpu' and not temporaries:
        return num_rows
    budget = 1 << 23 if device_type == 'cpu' else 1 << 26
    return min(num_rows, rows_per_block(num_cols, budget, batch))


def for_row_chunks(fn: Callable[[int, int], None], num_rows: int, chunk: int,
                   workers: int = 1) -> None:
    """Call ``fn(r0, r1)`` on the row chunks ``[r0, r1)`` of ``range(num_rows)``.

    With ``workers`` > 1 (CPU), up to that many chunks run at once on a thread pool:
    torch's CPU ops and numpy's exponential release the GIL, and a chunk writes only
    its own rows. A 4096 x 4096 fp32 kernel rebuild took 19 ms serially against 14 ms
    on two threads (median of 15, 2-core AMD EPYC). The workers take the caller's
    grad and inference modes (both are per thread), and every chunk has finished when
    this returns or raises (the first failed chunk's exception).
    """
    bounds = [(r0, min(r0 + chunk, num_rows)) for r0 in range(0, num_rows, chunk)]
    workers = min(workers, len(bounds))
    if workers <= 1:
        for r0, r1 in bounds:
            fn(r0, r1)
        return
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()

    def run(bound):
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            fn(*bound)

    futures = [_thread_pool(workers, os.getpid()).submit(run, bound) for bound in bounds]
    wait(futures)  # no chunk still writes when an exception leaves
    for future in futures:
        future.result()


@functools.lru_cache(maxsize=4)
def _thread_pool(workers: int, pid: int) -> ThreadPoolExecutor:
    # keyed by pid: a forked child gets its own pool (the parent's threads are not in it)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix='saot-kernel')


def precision_floor(storage_dtype: torch.dtype, length: int) -> float:
    """Typical relative rounding of a length-``length`` product in this storage (see Stall)."""
    # Half storage rounds the kernel entries themselves (a fixed perturbation of the
    # problem, not noise), and its products accumulate in fp32 like fp32 storage.
    unit = 2.2e-16 if storage_dtype == torch.float64 else 6e-8
    return unit * math.sqrt(length)


class Operator:
    """Base class: ``step`` = f half-step followed by ``smin_b`` of the new f."""

    kind = 'base'

    def softmin_rows(self, g: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def softmin_cols(self, f: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_epsilon(self, epsilon: float, f: torch.Tensor, g: torch.Tensor) -> None:
        self.epsilon = epsilon

    def refresh(self, f: torch.Tensor, g: torch.Tensor, force: bool = False) -> bool:
        return False

    def step(self, f: torch.Tensor, g: torch.Tensor, f_update: Callable,
             violation: Optional[Callable]):
        """Return ``(f_new, smin_b(f_new), row violation or None)``.

        ``f_new = f_update(f, smin_a(g))`` elementwise; ``violation(f, smin_a(g), log_a)``
        sums the row-marginal violation of the current iterate (see ``_loop.py``).
        """
        s = self.softmin_rows(g)
        viol = violation(f, s, self.log_a) if violation is not None else None
        f_new = f_update(f, s)
        return f_new, self.softmin_cols(f_new), viol


class LogOperator(Operator):
    """Exact log-domain softmin over row blocks of a cost source.

    Args:
        source: cost source with ``rows(i0, i1) -> (B, n, M)`` (see ``costs.py``).
        log_a: ``(B, N)`` log source weights (``-inf`` allowed for zero mass).
        log_b: ``(B, M)`` log target weights.
        epsilon: entropic regularisation, in cost units.
        block_bytes: memory budget of one fp32 cost block.
    """

    kind = 'log'

    def __init__(self, source, log_a: torch.Tensor, log_b: torch.Tensor, epsilon: float,
                 block_bytes: int = 1 << 26):
        self.source, self.log_a, self.log_b = source, log_a, log_b
        self.epsilon = epsilon
        num_rows, num_cols = source.shape
        self.rows = min(num_rows, rows_per_block(num_cols, block_bytes, log_a.shape[0]))
        self.num_rows = num_rows

    def softmin_rows(self, g: torch.Tensor) -> torch.Tensor:
        eps = self.epsilon
        shift = (g / eps + self.log_b).unsqueeze(1)  # (B, 1, M)
        out = []
        for r0 in range(0, self.num_rows, self.rows):
            block = self.source.rows(r0, min(r0 + self.rows, self.num_rows))
            out.append(torch.logsumexp(shift - block / eps, dim=-1))
        return -eps * torch.cat(out, dim=1)

    def softmin_cols(self, f: torch.Tensor) -> torch.Tensor:
        eps = self.epsilon
        shift = (f / eps + self.log_a).unsqueeze(-1)  # (B, N, 1)
        acc = None
        for r0 in range(0, self.num_rows, self.rows):
            r1 = min(r0 + self.rows, self.num_rows)
            part = torch.logsumexp(shift[:, r0:r1] - self.source.rows(r0, r1) / eps, dim=1)
            acc = part if acc is None else torch.logaddexp(acc, part)
        return -eps * acc

    def step(self, f, g, f_update, violation):
        # One pass over row blocks per iteration: each cost block is read (or
        # recomputed from features) once, serves the f-update of its rows, then, with
        # the new f, adds its rows to the column log-sum-exp of the g-update.
        eps = self.epsilon
        row_shift = (g / eps + self.log_b).unsqueeze(1)  # (B, 1, M)
        f_new = torch.empty_like(f)
        viol = torch.zeros(f.shape[0], dtype=f.dtype, device=f.device) if violation else None
        acc = None
        for r0 in range(0, self.num_rows, self.rows):
            r1 = min(r0 + self.rows, self.num_rows)
            block = self.source.rows(r0, r1) / eps  # (B, n, M), C / eps
            s_blk = -eps * torch.logsumexp(row_shift - block, dim=-1)
            if viol is not None:
                viol += violation(f[:, r0:r1], s_blk, self.log_a[:, r0:r1])
            f_blk = f_update(f[:, r0:r1], s_blk)
            f_new[:, r0:r1] = f_blk
            col_shift = (f_blk / eps + self.log_a[:, r0:r1]).unsqueeze(-1)
            part = torch.logsumexp(col_shift - block, dim=1)
            acc = part if acc is None else torch.logaddexp(acc, part)
        return f_new, -eps * acc, viol


class KernelOperator(Operator):
    """Kernel-space softmin with a stored, periodically re-absorbed kernel.

    Args:
        source: cost source with ``rows(i0, i1) -> (B, n, M)``, ``batch``, ``shape``.
        log_a: ``(B, N)`` log source weights.
        log_b: ``(B, M)`` log target weights.
        epsilon: entropic regularisation, in cost units.
        storage_dtype: dtype of the stored kernel (fp32, fp16, bf16 or fp64).
        absorb_threshold: rebuild the kernel once the potentials moved this many
            epsilons since the last rebuild; default per storage dtype.
        cpu_workers: threads of a CPU rebuild or absorption (``for_row_chunks``);
            default ``torch.get_num_threads()``, at most 8.
    """

    kind = 'kernel'

    def __init__(self, source, log_a: torch.Tensor, log_b: torch.Tensor, epsilon: float,
                 storage_dtype: torch.dtype, absorb_threshold: Optional[float] = None,
                 cpu_workers: Optional[int] = None):
        self.source, self.log_a, self.log_b = source, log_a, log_b
        self.epsilon = epsilon
        self.storage_dtype = storage_dtype
        # Products accumulate in fp32 (fp64 for fp64 storage); potentials stay in the
        # dual dtype of log_a (fp64), so fp32 storage does not cap the accuracy at the
        # ~1e-5 that fp32 potentials of size O(1) / eps allow.
        self.mv_dtype = torch.float64 if storage_dtype == torch.float64 else torch.float32
        self.precision_floor = precision_floor(storage_dtype, max(source.shape))
        self.absorb_threshold = (ABSORB_THRESHOLD[storage_dtype]
                                 if absorb_threshold is None else absorb_threshold)
        batch = log_a.shape[0]
        num_rows, num_cols = source.shape
        self.kernel = empty_kernel((batch, num_rows, num_cols), storage_dtype, log_a.device)
        # Columns of zero mass must not set a row's reference maximum.
        self.col_mask = None
        if not bool(torch.isfinite(log_b).all()):
            self.col_mask = torch.where(torch.isfinite(log_b), 0.0,
                                        -math.inf).to(log_b.dtype).unsqueeze(1)
        self.f_hat = self.g_hat = self.f_ref = self.g_ref = None
        self.revive = 0.0  # see absorb_or_rebuild
        self.num_rebuilds = 0
        # a rebuild allocates nothing N x M-sized when the cost rows are views in the
        # kernel's dtype (exponents formed in the kernel) and no column is masked
        in_place = (isinstance(source, DenseCost) and
                    source.cost.dtype == source.dtype == storage_dtype)
        self.rebuild_rows = rebuild_rows(num_rows, num_cols, batch, log_a.device.type,
                                         temporaries=not in_place or self.col_mask is not None)
        self.absorb_rows = rebuild_rows(num_rows, num_cols, batch, log_a.device.type,
                                        temporaries=False)
        # Threads of a CPU rebuild or absorption (the loop itself runs on one thread, see
        # _loop.CPU_THREADS): default torch's setting where the operator is made; at most 8.
        workers = torch.get_num_threads() if cpu_workers is None else cpu_workers
        self.cpu_workers = min(8, workers) if log_a.device.type == 'cpu' else 1

    def set_epsilon(self, epsilon: float, f: torch.Tensor, g: torch.Tensor) -> None:
        self.epsilon = epsilon
        self.refresh(f, g, force=True)

    def refresh(self, f: torch.Tensor, g: torch.Tensor, force: bool = False) -> bool:
        """Absorb the scalings into the kernel if they drifted too far (syncs the device).

        ``force`` rebuilds from the cost (new epsilon, first call, after a rescue).
        Otherwise fp32/fp64 kernels absorb in place, ``K_ij *= e^{(df_i + dg_j)/eps}``:
        one read-write pass without exponentials, relative rounding ~2e-7 per
        absorption. A rebuild from the cost would form ``g_j/eps - C_ij/eps ~ 20`` in
        fp32 with ~2e-6 rounding that changes at every rebuild (fp64 arithmetic avoids
        it at several times the cost). Half kernels, whose own rounding is 1e-3, very
        large drifts, and potentials under which an entry flushed to zero could carry
        mass again (``absorb_or_rebuild``) rebuild from the cost.
        """
        if force:
            self._rebuild(f, g)
            return True
        return absorb_or_rebuild(self, *refresh_measures(f, g, self), f, g)

    def _rebuild(self, f: torch.Tensor, g: torch.Tensor) -> None:
        # K_ij = exp((f_hat_i + g_hat_j - C_ij) / eps) with f_hat = hard c-transform of
        # g_hat, so that every row's largest entry is exactly 1 (no row can underflow,
        # whatever the storage dtype). Exponents are formed in the cost's arithmetic
        # dtype; f_hat and g_hat are the exact values of the rounded references used.
        eps = self.epsilon
        arith = self.source.dtype
        f_hat = torch.empty_like(f)
        shift = (g / eps).to(arith)
        mask = None if self.col_mask is None else self.col_mask.to(arith)
        in_place = self.kernel.dtype == arith  # exponents formed in the kernel buffer

        def rebuild(r0: int, r1: int) -> None:
            expo = self.kernel[:, r0:r1] if in_place else None
            expo = torch.add(shift.unsqueeze(1), self.source.rows(r0, r1), alpha=-1.0 / eps,
                             out=expo)
            if mask is None:
                row_max = expo.amax(dim=-1, keepdim=True)
            else:
                row_max = (expo + mask).amax(dim=-1, keepdim=True)
            f_hat[:, r0:r1] = -eps * row_max.squeeze(-1).to(f.dtype)
            exp_(expo.sub_(row_max))
            if not in_place:
                self.kernel[:, r0:r1] = expo

        for_row_chunks(rebuild, self.kernel.shape[1], self.rebuild_rows, self.cpu_workers)
        self._set_references(f_hat, shift.to(g.dtype) * eps, f, g)
        self.revive = 0.0  # entries below e^-87 of their row maximum are 0 from here

    def _absorb(self, f: torch.Tensor, g: torch.Tensor) -> None:
        eps = self.epsilon
        du = (f - self.f_hat) / eps
        dv = (g - self.g_hat) / eps
        c = du.amax(dim=-1, keepdim=True)
        u = torch.exp(du - c).to(self.mv_dtype)
        v = torch.exp(dv + c).to(self.mv_dtype).unsqueeze(1)

        def absorb(r0: int, r1: int) -> None:
            self.kernel[:, r0:r1].mul_(u[:, r0:r1, None]).mul_(v)

        for_row_chunks(absorb, self.kernel.shape[1], self.absorb_rows, self.cpu_workers)
        self._set_references(f, g, f, g)

    def _set_references(self, f_hat, g_hat, f_ref, g_ref) -> None:
        # In place after the first build: a captured CUDA graph (_cuda_graph.py) holds
        # these tensors' memory, so an absorption must not replace them.
        if self.f_hat is None:
            self.f_hat, self.g_hat = f_hat.clone(), g_hat.clone()
            self.f_ref, self.g_ref = f_ref.clone(), g_ref.clone()
        else:
            self.f_hat.copy_(f_hat)
            self.g_hat.copy_(g_hat)
            self.f_ref.copy_(f_ref)
            self.g_ref.copy_(g_ref)
        self.num_rebuilds += 1

    def softmin_rows(self, g: torch.Tensor) -> torch.Tensor:
        eps = self.epsilon
        z = (g - self.g_hat) / eps + self.log_b
        m = z.amax(dim=-1, keepdim=True)
        s = rows_matvec(self.kernel, torch.exp(z - m).to(self.mv_dtype)).to(g.dtype)
        return self.f_hat - eps * (torch.log(s) + m)

    def softmin_cols(self, f: torch.Tensor) -> torch.Tensor:
        eps = self.epsilon
        z = (f - self.f_hat) / eps + self.log_a
        m = z.amax(dim=-1, keepdim=True)
        t = cols_matvec(self.kernel, torch.exp(z - m).to(self.mv_dtype)).to(f.dtype)
        return self.g_hat - eps * (torch.log(t) + m)
