"""Half-precision kernel products on CUDA with Triton: one read, fp32 vectors and sums.

A stored-kernel Sinkhorn iteration on a GPU is memory-bound: it reads the
``(B, N, M)`` kernel twice (``K w`` for the rows, ``K^T u`` for the columns).
With fp16/bf16 storage these two kernels read each half-precision entry once,
multiply it by an fp32 vector entry and accumulate in fp32, so the only rounding
is the storage's own. (cuBLAS needs half-precision right-hand sides, hence the
hi/lo split in ``_matvec.py``, and runs a GEMM tiling for a two-column product.)

* rows: a program owns ``BLOCK_R`` rows and streams across the columns.
* cols: a program owns ``BLOCK_C`` columns of one of ``splits`` row ranges and
  writes a partial sum; the partials are added afterwards (deterministic, unlike
  atomics). Splitting the rows gives the GPU enough programs when M is small.

Used only for CUDA tensors when Triton imports; ``TRITON_INTERPRET=1`` runs the
same kernels on CPU tensors (that is how the tests check them without a GPU).
"""
import math
from typing import Optional

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

_HALF = (torch.float16, torch.bfloat16)
_TARGET_PROGRAMS = 1024  # several waves on 100-150 multiprocessors

if triton is not None:

    @triton.jit
    def _rows_kernel(k_ptr, w_ptr, out_ptr, n_rows, n_cols, stride_kb, stride_kr, stride_wb,
                     stride_ob, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        batch = tl.program_id(0)
        rows = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
        row_ok = rows < n_rows
        row_ptr = k_ptr + batch.to(tl.int64) * stride_kb + rows.to(tl.int64)[:, None] * stride_kr
        acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
        for c0 in range(0, n_cols, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            col_ok = cols < n_cols
            k = tl.load(row_ptr + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                        other=0.0)
            w = tl.load(w_ptr + batch * stride_wb + cols, mask=col_ok, other=0.0)
            acc += tl.sum(k.to(tl.float32) * w[None, :], axis=1)
        tl.store(out_ptr + batch * stride_ob + rows, acc, mask=row_ok)

    @triton.jit
    def _cols_kernel(k_ptr, u_ptr, part_ptr, n_rows, n_cols, rows_per_split, stride_kb,
                     stride_kr, stride_ub, stride_pb, stride_ps, BLOCK_R: tl.constexpr,
                     BLOCK_C: tl.constexpr):
        batch = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        split = tl.program_id(2)
        col_ok = cols < n_cols
        r_begin = split * rows_per_split
        r_end = tl.minimum(r_begin + rows_per_split, n_rows)
        base = k_ptr + batch.to(tl.int64) * stride_kb
        acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        for r0 in range(r_begin, r_end, BLOCK_R):
            rows = r0 + tl.arange(0, BLOCK_R)
            row_ok = rows < r_end
            k = tl.load(base + rows.to(tl.int64)[:, None] * stride_kr + cols[None, :],
                        mask=row_ok[:, None] & col_ok[None, :], other=0.0)
            u = tl.load(u_ptr + batch * stride_ub + rows, mask=row_ok, other=0.0)
            acc += tl.sum(k.to(tl.float32) * u[:, None], axis=0)
        tl.store(part_ptr + batch * stride_pb + split * stride_ps + cols, acc, mask=col_ok)


def available(kernel: torch.Tensor) -> bool:
    """Whether these kernels serve ``kernel``: Triton present, half storage, unit column stride.

    On CUDA tensors; with ``TRITON_INTERPRET=1`` also on CPU tensors (tests).
    """
    if triton is None or kernel.dtype not in _HALF or kernel.dim() != 3:
        return False
    if kernel.stride(2) != 1:
        return False
    return kernel.is_cuda or _interpreting()


def _interpreting() -> bool:
    import os
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def rows_matvec(kernel: torch.Tensor, w: torch.Tensor, block_rows: int = 8,
                block_cols: int = 512) -> torch.Tensor:
    """``kernel (B, N, M) @ w (B, M) -> (B, N)`` in fp32; ``kernel`` fp16/bf16."""
    batch, num_rows, num_cols = kernel.shape
    w = w.to(torch.float32).contiguous()
    out = torch.empty((batch, num_rows), dtype=torch.float32, device=kernel.device)
    block_cols = min(block_cols, triton.next_power_of_2(num_cols))
    grid = (batch, triton.cdiv(num_rows, block_rows))
    _rows_kernel[grid](kernel, w, out, num_rows, num_cols, kernel.stride(0), kernel.stride(1),
                       w.stride(0), out.stride(0), BLOCK_R=block_rows, BLOCK_C=block_cols)
    return out


def cols_matvec(kernel: torch.Tensor, u: torch.Tensor, block_rows: int = 32,
                block_cols: int = 128, splits: Optional[int] = None) -> torch.Tensor:
    """``kernel^T (B, M, N) @ u (B, N) -> (B, M)`` in fp32; ``kernel`` fp16/bf16."""
    batch, num_rows, num_cols = kernel.shape
    u = u.to(torch.float32).contiguous()
    block_cols = min(block_cols, triton.next_power_of_2(num_cols))
    col_programs = triton.cdiv(num_cols, block_cols)
    if splits is None:
        splits = max(1, min(triton.cdiv(num_rows, 8 * block_rows),
                            math.ceil(_TARGET_PROGRAMS / (batch * col_programs))))
    rows_per_split = triton.cdiv(triton.cdiv(num_rows, splits), block_rows) * block_rows
    splits = triton.cdiv(num_rows, rows_per_split)
    partial = torch.empty((batch, splits, num_cols), dtype=torch.float32, device=kernel.device)
    grid = (batch, col_programs, splits)
    _cols_kernel[grid](kernel, u, partial, num_rows, num_cols, rows_per_split, kernel.stride(0),
                       kernel.stride(1), u.stride(0), partial.stride(0), partial.stride(1),
                       BLOCK_R=block_rows, BLOCK_C=block_cols)
    return partial.sum(dim=1)
