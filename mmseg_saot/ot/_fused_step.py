"""Fused Sinkhorn iterations on a stored kernel: five Triton launches per iteration.

The eager iteration of ``_loop._run`` on a GPU is two memory-bound products plus
some 50 small vector operations (softmin shifts and logs, the relaxed updates, the
translation step with its two log-sum-exps), each a separate launch; at N = M = 16k
they cost more than reading the kernel. :class:`FusedIteration` runs the same
iteration as the kernels of ``_fused_kernels.py``:

1. ``K w`` with the f half-step as its epilogue (``rows_step_kernel``);
2. translation after f and the column weights (``prep_cols_kernel``);
3. split partial sums of ``K^T u`` (``_triton_kernels.cols_kernel``);
4. the g half-step (``cols_step_kernel``);
5. translation after g and the next row weights (``prep_rows_kernel``).

Numerics are those of the eager path: fp64 potentials and vector work, fp32 weights
and product sums, the same max shifts and the same translation cache (``A``, ``B``
of ``Translation``, kept on the device), so the fixed point is the same and the
iterates agree to the rounding of the fp32 products. Check windows, absorption
and the log-domain fallback stay in ``_loop.py``; a measured iteration also returns
the marginal violations (per-program partial sums, added in fixed order).

fp32 kernels may use cuBLAS for the two products instead (``FP32_PRODUCTS``; the
vector work stays fused: six launches). Selected for CUDA kernels (and CPU tensors
under ``TRITON_INTERPRET=1``, for the tests); ``ENABLED['fused'] = False`` restores
the eager iteration.
"""
import functools
import math
from typing import Optional, Tuple

import torch

from . import _matvec, _triton_matvec
from ._operators import KernelOperator

ENABLED = {'fused': True}
# Products of fp32 kernels: 'triton' (the f half-step fused into the product) or 'cublas'.
FP32_PRODUCTS = {'name': 'triton'}
_STORAGE = (torch.float32, torch.float16, torch.bfloat16)
# fp64 parameter vector read by every kernel (Triton passes Python floats as fp32).
PARAM_EPS, PARAM_TAU_A, PARAM_TAU_B, PARAM_OMEGA, PARAM_INV_A, PARAM_INV_B, PARAM_KAPPA = range(7)
# Per-problem scalars (B, 8): translation cache A, B; A, B and lam after the f-side
# translation; max shifts of the column and row weights. Slots read and written by one
# kernel are distinct, so no program reads a value another program of it overwrites.
SLOT_A, SLOT_B, SLOT_A_MID, SLOT_B_MID, SLOT_LAM, SLOT_M_COLS, SLOT_M_ROWS = range(7)
# Partial kinds of ``part`` (4, B, P): max z, log-sum-exp max, log-sum-exp sum, violation.
PART_ZMAX, PART_LSE_MAX, PART_LSE_SUM, PART_VIOL = range(4)


@functools.lru_cache(maxsize=None)
def _kernels():
    """The ``_fused_kernels`` module, or None without Triton (imported on first use)."""
    try:
        from . import _fused_kernels
    except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
        return None
    return _fused_kernels


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def usable(op) -> bool:
    """Whether ``op`` can run fused: a dense stored fp32/fp16/bf16 kernel on CUDA
    (or any device under ``TRITON_INTERPRET=1``), fp64 potentials, Triton present."""
    if not ENABLED['fused'] or not isinstance(op, KernelOperator):
        return False
    kernel = op.kernel
    if kernel.dtype not in _STORAGE or kernel.dim() != 3 or not kernel.is_contiguous():
        return False
    if op.log_a.dtype != torch.float64 or op.log_b.dtype != torch.float64:
        return False
    if kernel.dtype != torch.float32 and _matvec.HALF_CUDA_BACKEND['name'] != 'triton':
        return False
    on_device = kernel.is_cuda or _triton_matvec._interpreting()
    return on_device and _triton_matvec._kernels() is not None and _kernels() is not None


class FusedIteration:
    """One Sinkhorn iteration of ``_loop._run`` on ``op``'s stored kernel, fused.

    Args:
        op: the :class:`KernelOperator` (its kernel ``(B, N, M)``, references
            ``f_hat`` (B, N), ``g_hat`` (B, M) and log weights are read, never written).
        rho_a, rho_b: marginal penalties (``inf``: balanced side).

    The potentials are updated in place in buffers owned here: ``iterate`` returns the
    same ``f``, ``g`` tensors while the loop passes them back, and copies new ones.
    """

    # Product tiles, from tools/tune_fused_blocks.py on an H200 at N = M = 16384
    # (benchmarks/fused_tuning.md): 64-row column tiles cut the fp16/bf16 column
    # product most (fp16 0.78 -> 0.58 ms/iteration); 16 x 256 row tiles were the best
    # or within noise of it for every storage.
    BLOCK_R, BLOCK_C = 16, 256  # rows product: rows per program, columns per step
    COLS_BLOCK_R, COLS_BLOCK_C = 64, 128  # split columns product
    ROWS_WARPS, COLS_WARPS = 4, 4  # warps per program of the two products
    BLOCK = 1024  # vector kernels: entries per program

    def __init__(self, op: KernelOperator, rho_a: float, rho_b: float):
        self.op = op
        kernel = op.kernel
        batch, num_rows, num_cols = kernel.shape
        self.shape = (batch, num_rows, num_cols)
        dev = kernel.device
        self.log_a, self.log_b = op.log_a.contiguous(), op.log_b.contiguous()
        self.inv_a = 0.0 if math.isinf(rho_a) else 1.0 / rho_a
        self.inv_b = 0.0 if math.isinf(rho_b) else 1.0 / rho_b
        total = self.inv_a + self.inv_b
        self.kappa = 1.0 / total if total > 0 else 0.0
        self.block = min(self.BLOCK, _pow2(max(num_rows, num_cols)))
        self.block_c = min(self.BLOCK_C, _pow2(num_cols))
        self.parts_rows = _cdiv(num_rows, self.BLOCK_R)
        self.parts_cols = _cdiv(num_cols, self.block)
        f64 = dict(dtype=torch.float64, device=dev)
        self.part_rows = torch.zeros((4, batch, self.parts_rows), **f64)
        self.part_cols = torch.zeros((4, batch, self.parts_cols), **f64)
        self.scal = torch.zeros((batch, 8), **f64)
        self.a_view, self.b_view = self.scal[:, SLOT_A], self.scal[:, SLOT_B]
        self.w_rows = torch.empty((batch, num_cols), dtype=torch.float32, device=dev)
        self.u_cols = torch.empty((batch, num_rows), dtype=torch.float32, device=dev)
        self.cublas = kernel.dtype == torch.float32 and FP32_PRODUCTS['name'] == 'cublas'
        self.s_rows = (torch.empty((batch, num_rows), dtype=torch.float32, device=dev)
                       if self.cublas else self.w_rows)  # unused without cuBLAS
        if self.cublas:
            self.cols_geometry = None
            splits = 1
        else:
            self.cols_geometry = _triton_matvec.cols_split(batch, num_rows, num_cols,
                                                           self.COLS_BLOCK_R, self.COLS_BLOCK_C)
            splits = self.cols_geometry[3]
        self.col_part = torch.empty((batch, splits, num_cols), dtype=torch.float32, device=dev)
        self.f = self.g = None
        self.params = None
        self.params_key = None
        self.rows_ready = None  # (g version, kernel rebuild count, epsilon) of w_rows

    @classmethod
    def create(cls, op, rho_a: float, rho_b: float) -> Optional['FusedIteration']:
        """A fused iteration for ``op``, or None where ``usable(op)`` is false."""
        return cls(op, rho_a, rho_b) if usable(op) else None

    # ------------------------------------------------------------------ state hand-over

    def _adopt(self, f: torch.Tensor, g: torch.Tensor):
        # New potentials from the loop (start, rescue): own contiguous copies.
        if f is not self.f:
            self.f = f.contiguous().clone()
        if g is not self.g:
            self.g = g.contiguous().clone()
            self.rows_ready = None

    def _set_params(self, eps, tau_a, tau_b, omega) -> None:
        key = (eps, tau_a, tau_b, omega)
        if key != self.params_key:  # a host-to-device copy only when a value changes
            values = [eps, tau_a, tau_b, omega, self.inv_a, self.inv_b, self.kappa, 0.0]
            self.params = torch.tensor(values, dtype=torch.float64, device=self.scal.device)
            self.params_key = key

    def _load_translation(self, translation) -> None:
        # The f-side translation reads the cached B (computed from g if unset).
        if translation.B is None:
            self.b_view.copy_(translation._log_b(self.g))
        elif translation.B is not self.b_view:
            self.b_view.copy_(translation.B)

    def _ready_key(self, eps):
        return (self.g._version, self.op.num_rebuilds, eps)

    # ------------------------------------------------------------------------ launches

    def _prepare_rows(self, kern) -> None:
        """Row weights ``w`` and their shift from the current g (start of a run)."""
        batch, num_rows, num_cols = self.shape
        g, pc = self.g, self.part_cols
        kern.zmax_partials_kernel[(batch, self.parts_cols)](
            g, self.op.g_hat, self.log_b, self.params, pc, num_cols, g.stride(0), pc.stride(1),
            BLOCK=self.block)
        self._prep_rows(kern, shift=False)

    def _prep_rows(self, kern, shift: bool) -> None:
        batch, num_rows, num_cols = self.shape
        g, f, pc = self.g, self.f, self.part_cols
        grid = (batch, _cdiv(max(num_rows, num_cols), self.block))
        kern.prep_rows_kernel[grid](
            g, self.op.g_hat, self.log_b, self.w_rows, f, self.params, self.scal, pc, num_cols,
            num_rows, self.parts_cols, g.stride(0), self.w_rows.stride(0), f.stride(0),
            pc.stride(0), pc.stride(1), BLOCK=self.block,
            PBLOCK=min(1024, _pow2(self.parts_cols)), SHIFT=shift)

    def _cols_product(self) -> None:
        kernel, u, cp = self.op.kernel, self.u_cols, self.col_part
        if self.cublas:
            torch.bmm(u.unsqueeze(1), kernel, out=cp)
            return
        batch, num_rows, num_cols = self.shape
        block_cols, col_programs, rows_per_split, splits = self.cols_geometry
        _triton_matvec._kernels().cols_kernel[(batch, col_programs, splits)](
            kernel, u, cp, num_rows, num_cols, rows_per_split, kernel.stride(0),
            kernel.stride(1), u.stride(0), cp.stride(0), cp.stride(1),
            BLOCK_R=self.COLS_BLOCK_R, BLOCK_C=block_cols, num_warps=self.COLS_WARPS)

    def iterate(self, f: torch.Tensor, g: torch.Tensor, eps: float, tau_a: float, tau_b: float,
                omega: float, use_ti: bool, translation, measure: bool
                ) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor],
                           Optional[torch.Tensor]]:
        """One iteration: f half-step, translation, g half-step, translation.

        Args:
            f, g: ``(B, N)``, ``(B, M)`` fp64 potentials.
            eps, tau_a, tau_b, omega: epsilon, the two ``rho / (rho + eps)`` and the
                over-relaxation factor (1: plain steps).
            use_ti: apply the translation-invariant step; ``translation`` is the loop's
                ``Translation`` (its cache is read and left as views of the device slots).
            measure: also return the row and column marginal violations of this
                iterate, ``(B,)`` fp64 each (else None, None).

        Returns:
            ``(f, g, row violation, column violation)``.
        """
        kern = _kernels()
        self._adopt(f, g)
        self._set_params(eps, tau_a, tau_b, omega)
        if use_ti:
            self._load_translation(translation)
        if self.rows_ready != self._ready_key(eps):
            self._prepare_rows(kern)
        f, g, op = self.f, self.g, self.op
        batch, num_rows, num_cols = self.shape
        relaxed = omega != 1.0
        pr, pc, kernel = self.part_rows, self.part_cols, op.kernel
        if self.cublas:
            torch.bmm(kernel, self.w_rows.unsqueeze(-1), out=self.s_rows.unsqueeze(-1))
        # 1. s = K w and f <- lerp(f, tau_a smin_a(g), omega), with partials of the new f
        kern.rows_step_kernel[(batch, self.parts_rows)](
            kernel, self.w_rows, self.s_rows, f, op.f_hat, self.log_a, self.params, self.scal,
            pr, num_rows, num_cols, kernel.stride(0), kernel.stride(1), self.w_rows.stride(0),
            f.stride(0), pr.stride(0), pr.stride(1), BLOCK_R=self.BLOCK_R, BLOCK_C=self.block_c,
            PRODUCT_DONE=self.cublas, RELAXED=relaxed, USE_TI=use_ti, MEASURE=measure,
            num_warps=self.ROWS_WARPS)
        # 2. translation after f; u = exp(z - max z) for smin_b(f)
        kern.prep_cols_kernel[(batch, _cdiv(num_rows, self.block))](
            f, op.f_hat, self.log_a, self.u_cols, self.params, self.scal, pr, num_rows,
            self.parts_rows, f.stride(0), self.u_cols.stride(0), pr.stride(0), pr.stride(1),
            BLOCK=self.block, PBLOCK=min(1024, _pow2(self.parts_rows)), USE_TI=use_ti)
        # 3. K^T u as split partial sums
        self._cols_product()
        # 4. g <- lerp(g - lam, tau_b (smin_b(f) - lam), omega), with partials of the new g
        cp = self.col_part
        kern.cols_step_kernel[(batch, self.parts_cols)](
            cp, cp.shape[1], g, op.g_hat, self.log_b, self.params, self.scal, pc, num_cols,
            cp.stride(0), cp.stride(1), g.stride(0), pc.stride(0), pc.stride(1),
            BLOCK=self.block, RELAXED=relaxed, USE_TI=use_ti, MEASURE=measure)
        # 5. translation after g; w for the next iteration's f half-step
        self._prep_rows(kern, shift=use_ti)
        self.rows_ready = self._ready_key(eps)
        if use_ti:
            translation.A, translation.B = self.a_view, self.b_view
        if not measure:
            return f, g, None, None
        return f, g, pr[PART_VIOL].sum(-1), pc[PART_VIOL].sum(-1)
