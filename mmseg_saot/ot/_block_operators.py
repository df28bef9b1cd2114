"""Softmin operators on a padded block support (block-sparse step 4).

The kernel-space operator and its exact log-domain rescue, iterated by the shared dual
loop of ``_loop.py``; rows are target slots, columns the sources plus a zero-mass dummy.
"""
import math

import torch

from ._matvec import cols_matvec, np, rows_matvec
from ._operators import Operator, precision_floor
from ._refresh import ABSORB_THRESHOLD, absorb_or_rebuild, refresh_measures

def _rows_product(kernel: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(J, bt, W) x (J, W) -> (J, bt)``: each block times its own vector.

    CPU fp32/fp64, measured single-threaded at SAOT's working point (172 x 16 x 2944
    fp32, 2-core EPYC): numpy's ``matmul`` (a C loop of OpenBLAS gemv) 2.1-2.5 ms,
    ``torch.bmm`` with the vector as left operand 3.2 ms, ``torch.bmm`` / ``einsum`` /
    ``matmul`` with the vector as right column 12 ms (MKL's gemm path), one ``cpu_mv``
    per block 4.4 ms. On 2 threads (the block loop's default, ``cpu_threads``)
    ``torch.bmm`` splits the batch: 1.3 ms against numpy's 1.6 ms (one thread).
    GPU and half storage: ``rows_matvec``.
    """
    if not kernel.is_cuda and kernel.dtype == w.dtype:
        if np is not None and torch.get_num_threads() == 1:
            return torch.from_numpy(np.matmul(kernel.numpy(), w.numpy()[..., None])[..., 0])
        return torch.bmm(w.unsqueeze(1), kernel.transpose(1, 2)).squeeze(1)
    return rows_matvec(kernel, w)


def _cols_product(kernel: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``(J, bt, W)^T x (J, bt) -> (J, W)``.

    CPU fp32/fp64: ``torch.bmm`` with the vector as left operand, 2.4 ms in the setting
    of :func:`_rows_product` (numpy ``matmul`` 2.5 ms, one ``cpu_mv`` per block 7.5 ms,
    ``einsum`` 12 ms; 1.1 ms on 2 threads). GPU and half storage: ``cols_matvec``.
    """
    if not kernel.is_cuda and kernel.dtype == u.dtype:
        return torch.bmm(u.unsqueeze(1), kernel).squeeze(1)
    return cols_matvec(kernel, u)


class BlockKernelOperator(Operator):
    """Kernel-space softmin on the block support (rows = target slots, cols = sources).

    Same scheme as ``KernelOperator``: a stored kernel ``exp((f_hat + g_hat - C)/eps)``
    in the padded layout of :class:`_Support` (row maxima 1 after a rebuild), in-place
    absorption when the potentials drift. A half-step is one batched product per width
    bucket: rows ``K_k w[src_k]``; columns ``u_k^T K_k`` scattered into the source sums
    with a single ``scatter_add_`` over ``src_flat``. The row half-step needs no other
    pass: the loop's generic ``step`` (rows, f-update, columns) is used on CPU and GPU.
    """

    kind = 'kernel'
    graph_safe = False  # host-side indexing: no CUDA graph capture
    # CPU: the loop keeps torch's thread count (all cores). Unlike the dense loop's
    # vector work, each product here is one batched call over ~170 blocks, which
    # torch splits across threads: 40 iterations took 0.36-0.39 s on 2 threads
    # against 0.47-0.57 s on one (working point, 2-core EPYC).
    cpu_threads = None

    def __init__(self, cost, support, log_a, log_b, epsilon, storage_dtype):
        self.cost, self.support = cost, support
        self.log_a, self.log_b = log_a, log_b  # rows: target slots, cols: sources + dummy
        self.epsilon = epsilon
        self.storage_dtype = storage_dtype
        self.absorb_threshold = ABSORB_THRESHOLD[storage_dtype]
        self.kernel = torch.empty(cost.shape, dtype=storage_dtype, device=cost.device)
        self.mv_dtype = torch.float64 if storage_dtype == torch.float64 else torch.float32
        self.precision_floor = precision_floor(storage_dtype, max(support.bt, support.width))
        self.num_cols = log_b.shape[1]
        self.f_hat = self.g_hat = self.f_ref = self.g_ref = None
        self.revive = 0.0  # see _refresh.absorb_or_rebuild

    def set_epsilon(self, epsilon, f, g):
        self.epsilon = epsilon
        self.refresh(f, g, force=True)

    def refresh(self, f, g, force=False):
        if force:
            self._rebuild(f, g)
            return True
        # the dummy column (last) holds no kernel entries
        return absorb_or_rebuild(self, *refresh_measures(f, g, self, slice(None, -1)), f, g)

    def _rebuild(self, f, g):
        eps, sup = self.epsilon, self.support
        shift = (g[0] / eps).to(self.cost.dtype)
        f_hat = torch.empty_like(f)
        shifts = sup.gather_cols(shift)
        for k, c0, c1 in sup.chunks():
            dest = sup.view(self.kernel, k)[c0:c1]
            # exponent g/eps - C/eps, in the kernel's own memory when the dtypes match
            expo = torch.add(shifts[k][c0:c1, None, :], sup.view(self.cost, k)[c0:c1],
                             alpha=-1.0 / eps,
                             out=dest if dest.dtype == self.cost.dtype else None)
            row_max = expo.amax(dim=-1, keepdim=True)
            f_hat[0, sup.rows(k, c0, c1)] = -eps * row_max.reshape(-1).to(f.dtype)
            torch.exp_(expo.sub_(row_max))  # row maxima 1
            if expo is not dest:
                dest.copy_(expo)
        self.f_hat, self.g_hat = f_hat, (shift.to(g.dtype) * eps).unsqueeze(0)
        self.g_hat[:, -1] = 0.0
        self.f_ref, self.g_ref = f.clone(), g.clone()
        self.revive = 0.0

    def _absorb(self, f, g):
        eps, sup = self.epsilon, self.support
        du = (f - self.f_hat)[0] / eps
        dv = (g - self.g_hat)[0] / eps
        dv[-1] = 0.0
        c = float(du.amax())
        u = torch.exp(du - c).to(self.mv_dtype)
        v = torch.exp(dv + c).to(self.mv_dtype)
        for k, vk in enumerate(sup.gather_cols(v)):
            block = sup.view(self.kernel, k)
            block.mul_(u[sup.rows(k)].view(block.shape[0], sup.bt, 1))
            block.mul_(vk[:, None, :])
        self.f_hat, self.g_hat = f.clone(), g.clone()
        self.f_ref, self.g_ref = f.clone(), g.clone()

    def _col_weights(self, g):
        z = (g - self.g_hat) / self.epsilon + self.log_b  # dummy column: -inf
        m = z[:, :-1].amax(dim=-1, keepdim=True)
        return torch.exp(z - m)[0].to(self.mv_dtype), m[0]

    def softmin_rows(self, g):
        w, m = self._col_weights(g)
        sup = self.support
        s = torch.cat([_rows_product(sup.view(self.kernel, k), wk).reshape(-1)
                       for k, wk in enumerate(sup.gather_cols(w))])
        return self.f_hat - self.epsilon * (torch.log(s.to(g.dtype)).unsqueeze(0) + m)

    def softmin_cols(self, f):
        z = (f - self.f_hat) / self.epsilon + self.log_a
        m = z.amax(dim=-1, keepdim=True)
        u = torch.exp(z - m)[0].to(self.mv_dtype)
        sup = self.support
        sums = sup.scatter_cols([_cols_product(sup.view(self.kernel, k),
                                               u[sup.rows(k)].view(-1, sup.bt))
                                 for k in range(sup.num_buckets)], self.num_cols)
        t = self.g_hat[0] - self.epsilon * (torch.log(sums.to(f.dtype)) + m[0])
        t[-1] = 0.0  # zero-mass dummy source
        return t.unsqueeze(0)


class BlockLogOperator(Operator):
    """Exact log-domain softmin on the block support (rescue path), in chunks of blocks."""

    kind = 'log'
    graph_safe = False  # host-side indexing: no CUDA graph capture
    cpu_threads = None  # as BlockKernelOperator

    def __init__(self, cost, support, log_a, log_b, epsilon):
        self.cost, self.support = cost, support
        self.log_a, self.log_b = log_a, log_b
        self.epsilon = epsilon
        self.num_cols = log_b.shape[1]

    def softmin_rows(self, g):
        eps, sup = self.epsilon, self.support
        z = sup.gather_cols(g[0] / eps + self.log_b[0])  # dummy source: -inf
        out = [torch.logsumexp(z[k][c0:c1, None, :] -
                               sup.view(self.cost, k)[c0:c1].to(g.dtype) / eps,
                               dim=-1).reshape(-1) for k, c0, c1 in sup.chunks()]
        return -eps * torch.cat(out).unsqueeze(0)

    def softmin_cols(self, f):
        eps, sup = self.epsilon, self.support
        zr = f[0] / eps + self.log_a[0]
        parts = [torch.logsumexp(zr[sup.rows(k, c0, c1)].view(-1, sup.bt, 1) -
                                 sup.view(self.cost, k)[c0:c1].to(zr.dtype) / eps,
                                 dim=1).reshape(-1) for k, c0, c1 in sup.chunks()]
        flat = torch.cat(parts)
        peak = flat.new_full((self.num_cols,), -math.inf).scatter_reduce(
            0, sup.src_flat, flat, reduce='amax')
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        sums = flat.new_zeros(self.num_cols).index_add_(0, sup.src_flat,
                                                        torch.exp(flat - peak[sup.src_flat]))
        t = -eps * (torch.log(sums) + peak)
        t[-1] = 0.0
        return t.unsqueeze(0)
