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
import functools
import math
import os
from typing import Optional

import torch

_HALF = (torch.float16, torch.bfloat16)
_TARGET_PROGRAMS = 1024  # several waves on 100-150 multiprocessors


@functools.lru_cache(maxsize=None)
def _kernels():
    """The ``_triton_kernels`` module, or None without Triton (imported on first use)."""
    try:
        from . import _triton_kernels
    except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
        return None
    return _triton_kernels


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def available(kernel: torch.Tensor) -> bool:
    """Whether these kernels serve ``kernel``: Triton present, half storage, unit column stride.

    On CUDA tensors; with ``TRITON_INTERPRET=1`` also on CPU tensors (tests).
    """
    if kernel.dtype not in _HALF or kernel.dim() != 3 or kernel.stride(2) != 1:
        return False
    return (kernel.is_cuda or _interpreting()) and _kernels() is not None


def _interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def rows_matvec(kernel: torch.Tensor, w: torch.Tensor, block_rows: int = 8,
                block_cols: int = 512) -> torch.Tensor:
    """``kernel (B, N, M) @ w (B, M) -> (B, N)`` in fp32; ``kernel`` fp16/bf16."""
    batch, num_rows, num_cols = kernel.shape
    w = w.to(torch.float32).contiguous()
    out = torch.empty((batch, num_rows), dtype=torch.float32, device=kernel.device)
    block_cols = min(block_cols, _next_power_of_2(num_cols))
    grid = (batch, _cdiv(num_rows, block_rows))
    _kernels().rows_kernel[grid](kernel, w, out, num_rows, num_cols, kernel.stride(0),
                                 kernel.stride(1), w.stride(0), out.stride(0),
                                 BLOCK_R=block_rows, BLOCK_C=block_cols)
    return out


def cols_split(batch: int, num_rows: int, num_cols: int, block_rows: int, block_cols: int,
               splits: Optional[int] = None):
    """Geometry of ``cols_kernel``: ``(block_cols, col_programs, rows_per_split, splits)``.

    By default the rows are split so that about ``_TARGET_PROGRAMS`` programs run,
    each over at least ``8 * block_rows`` rows.
    """
    block_cols = min(block_cols, _next_power_of_2(num_cols))
    col_programs = _cdiv(num_cols, block_cols)
    if splits is None:
        splits = max(1, min(_cdiv(num_rows, 8 * block_rows),
                            math.ceil(_TARGET_PROGRAMS / (batch * col_programs))))
    rows_per_split = _cdiv(_cdiv(num_rows, splits), block_rows) * block_rows
    return block_cols, col_programs, rows_per_split, _cdiv(num_rows, rows_per_split)


def cols_matvec(kernel: torch.Tensor, u: torch.Tensor, block_rows: int = 32,
                block_cols: int = 128, splits: Optional[int] = None) -> torch.Tensor:
    """``kernel^T (B, M, N) @ u (B, N) -> (B, M)`` in fp32; ``kernel`` fp16/bf16."""
    batch, num_rows, num_cols = kernel.shape
    u = u.to(torch.float32).contiguous()
    block_cols, col_programs, rows_per_split, splits = cols_split(
        batch, num_rows, num_cols, block_rows, block_cols, splits)
    partial = torch.empty((batch, splits, num_cols), dtype=torch.float32, device=kernel.device)
    grid = (batch, col_programs, splits)
    _kernels().cols_kernel[grid](kernel, u, partial, num_rows, num_cols, rows_per_split,
                                 kernel.stride(0), kernel.stride(1), u.stride(0),
                                 partial.stride(0), partial.stride(1),
                                 BLOCK_R=block_rows, BLOCK_C=block_cols)
    return partial.sum(dim=1)
