"""Matrix-vector products with a stored kernel, fp32 accumulation for every storage dtype.

The kernel-space Sinkhorn iteration is two matrix-vector products per iteration
with a stored ``(B, N, M)`` matrix, so these two functions decide its speed:

* fp32/fp64 storage on CPU: one BLAS ``gemv`` per batch element, through numpy's
  BLAS (OpenBLAS in the numpy wheels) on zero-copy views when numpy is importable,
  else ``torch.mv``. Measured on a 2-core AMD EPYC, 4096 x 4096 fp32: OpenBLAS did
  both products of an iteration in 5 ms against MKL's 10 ms (MKL runs a generic
  path on AMD CPUs), and its blocked accumulation was 3x more accurate (relative
  error 1e-6 against 3e-6 for the transposed product). A batched ``bmm`` with one
  right-hand column goes through MKL's ``gemm`` path, 5-20x slower, so the batch is
  a loop.
* fp32/fp64 storage on CUDA: one batched cuBLAS call.
* fp16/bf16 storage on CUDA: the Triton kernels of ``_triton_matvec.py`` (one read of
  the matrix, fp32 vector and sums) where Triton imports; else (or with
  ``HALF_CUDA_BACKEND['name'] = 'cublas'``) ``torch.bmm(..., out_dtype=torch.float32)``
  (cuBLAS accumulates and writes fp32). The fp32 vector is split into a high and a low
  half-precision part, ``w = w_hi + w_lo``, passed as two columns of one product:
  the matrix is still read once (the product is memory-bound), and the vector
  keeps ~22 significant bits instead of 11 (fp16) or 8 (bf16).
* fp16/bf16 storage on CPU: CPU BLAS has no half-in/fp32-out ``gemv``; row chunks
  of the matrix are up-cast into a small reusable fp32 buffer.
"""
from typing import Optional

import torch

from . import _triton_matvec

try:  # CPU products through numpy's BLAS; see the module docstring
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with every torch install we support
    np = None

_HALF = (torch.float16, torch.bfloat16)
# Up-cast chunks of about this many bytes (fits the L2 cache of current CPUs).
_CHUNK_BYTES = 1 << 21
_OUT_DTYPE_MM = {'ok': None}
# 'triton' (default where available) or 'cublas'; benchmarks compare the two.
HALF_CUDA_BACKEND = {'name': 'triton'}


def cpu_mv(mat: torch.Tensor, vec: torch.Tensor, out: Optional[torch.Tensor] = None,
           transpose: bool = False) -> torch.Tensor:
    """``mat @ vec`` (or ``mat^T @ vec``) for CPU fp32/fp64 tensors, without autograd.

    ``mat`` may be any row-major slice; ``out`` (contiguous, ``vec.dtype``) is filled if
    given.
    """
    if np is None or mat.dtype != vec.dtype:
        res = torch.mv(mat.t() if transpose else mat, vec)
        return res if out is None else out.copy_(res)
    m, v = mat.detach().numpy(), vec.detach().contiguous().numpy()
    if out is None:
        return torch.from_numpy(np.dot(v, m) if transpose else np.dot(m, v))
    np.dot(v, m, out=out.numpy()) if transpose else np.dot(m, v, out=out.numpy())
    return out


def empty_kernel(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised kernel buffer; on CPU, allocated by numpy where it imports.

    numpy advises the kernel to back allocations of 4 MB and more with transparent
    huge pages (where they are enabled only on request, as by default): writing a
    fresh 4096 x 4096 fp32 buffer for the first time took 6.6 ms against 27 ms for
    torch's allocation, whose 4 KB pages each fault on first touch (2-core AMD EPYC).
    """
    device = torch.device(device)
    if device.type != 'cpu' or np is None:
        return torch.empty(shape, dtype=dtype, device=device)
    numel = 1
    for size in shape:
        numel *= int(size)
    if numel == 0:  # a byte view of nothing cannot be re-viewed
        return torch.empty(shape, dtype=dtype)
    item = torch.empty((), dtype=dtype).element_size()
    raw = np.empty(numel * item, dtype=np.uint8)
    return torch.from_numpy(raw).view(dtype).view(tuple(shape))


def exp_(x: torch.Tensor) -> torch.Tensor:
    """``torch.exp_(x)``; on CPU fp32/fp64 through numpy, whose vectorised loops ran
    a 4096 x 4096 fp32 exponential in 7.5 ms against torch's 16 ms on one thread."""
    if (np is None or x.device.type != 'cpu' or x.dtype not in (torch.float32, torch.float64)
            or (x.requires_grad and torch.is_grad_enabled())):
        return torch.exp_(x)  # numpy would write behind autograd's back
    arr = x.detach().numpy()
    with np.errstate(all='ignore'):  # as torch: inf and nan pass through silently
        np.exp(arr, out=arr)
    return x


def _rows_per_chunk(num_cols: int, element_bytes: int = 4) -> int:
    return max(1, _CHUNK_BYTES // max(1, num_cols * element_bytes))


def matmul_fp32(x: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
    """Return ``x @ y_t`` accumulated and returned in fp32 (fp64 if the inputs are fp64);
    2-D, or batched with :func:`torch.matmul`'s broadcasting.

    Used for cost blocks from half-precision features: a bf16 product rounded to
    bf16 would carry a ~4e-3 error on a cosine, i.e. 8 % of the kernel at eps 0.05.
    """
    if x.dtype in _HALF:
        if x.is_cuda and x.dim() == y_t.dim() == 2 and _OUT_DTYPE_MM['ok'] is not False:
            try:
                out = torch.mm(x, y_t.to(x.dtype), out_dtype=torch.float32)
                _OUT_DTYPE_MM['ok'] = True
                return out
            except (TypeError, RuntimeError):
                _OUT_DTYPE_MM['ok'] = False
        return x.float() @ y_t.float()
    return x @ y_t.to(x.dtype)


def _split_hi_lo(w: torch.Tensor, dtype: torch.dtype):
    """Split ``w`` (B, L) >= 0 into ``scale * (hi + lo)`` with hi, lo in ``dtype``.

    Returns the ``(B, L, 2)`` two-column right-hand side and the ``(B, 1)`` scale.
    Scaling by the row maximum keeps ``hi`` in [0, 1], far from fp16 overflow.
    """
    scale = w.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    ws = w / scale
    hi = ws.to(dtype)
    lo = (ws - hi.to(ws.dtype)).to(dtype)
    return torch.stack((hi, lo), dim=-1), scale


def _half_cuda_bmm(mat: torch.Tensor, w: torch.Tensor) -> Optional[torch.Tensor]:
    """``mat (B, P, Q) @ w (B, Q)`` in fp32 via cuBLAS, or None if unsupported."""
    if _OUT_DTYPE_MM['ok'] is False:
        return None
    rhs, scale = _split_hi_lo(w, mat.dtype)
    try:
        out = torch.bmm(mat, rhs, out_dtype=torch.float32)
    except (TypeError, RuntimeError):
        _OUT_DTYPE_MM['ok'] = False
        return None
    _OUT_DTYPE_MM['ok'] = True
    return out.sum(-1).to(w.dtype) * scale


def _use_triton(kernel: torch.Tensor) -> bool:
    return HALF_CUDA_BACKEND['name'] == 'triton' and _triton_matvec.available(kernel)


def rows_matvec(kernel: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Return ``kernel @ w``: ``(B, N, M) x (B, M) -> (B, N)`` in ``w.dtype``."""
    if kernel.dtype in _HALF:
        if _use_triton(kernel):
            return _triton_matvec.rows_matvec(kernel, w).to(w.dtype)
        if kernel.is_cuda:
            out = _half_cuda_bmm(kernel, w)
            if out is not None:
                return out
        return _half_rows_chunked(kernel, w)
    if kernel.is_cuda:
        return torch.bmm(kernel, w.unsqueeze(-1)).squeeze(-1)
    out = w.new_empty(kernel.shape[:2])
    for i in range(kernel.shape[0]):
        cpu_mv(kernel[i], w[i], out=out[i])
    return out


def cols_matvec(kernel: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Return ``kernel^T @ u``: ``(B, N, M) x (B, N) -> (B, M)`` in ``u.dtype``."""
    if kernel.dtype in _HALF:
        if _use_triton(kernel):
            return _triton_matvec.cols_matvec(kernel, u).to(u.dtype)
        if kernel.is_cuda:
            out = _half_cuda_bmm(kernel.transpose(1, 2), u)
            if out is not None:
                return out
        return _half_cols_chunked(kernel, u)
    if kernel.is_cuda:
        return torch.bmm(u.unsqueeze(1), kernel).squeeze(1)
    out = u.new_empty((kernel.shape[0], kernel.shape[2]))
    for i in range(kernel.shape[0]):
        cpu_mv(kernel[i], u[i], out=out[i], transpose=True)
    return out


def _half_rows_chunked(kernel: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    num_rows, num_cols = kernel.shape[1], kernel.shape[2]
    step = _rows_per_chunk(num_cols)
    out = w.new_empty(kernel.shape[:2])
    buf = w.new_empty((min(step, num_rows), num_cols))
    for i in range(kernel.shape[0]):
        for r0 in range(0, num_rows, step):
            r1 = min(r0 + step, num_rows)
            chunk = buf[:r1 - r0]
            chunk.copy_(kernel[i, r0:r1])
            cpu_mv(chunk, w[i], out=out[i, r0:r1])
    return out


def _half_cols_chunked(kernel: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    num_rows, num_cols = kernel.shape[1], kernel.shape[2]
    step = _rows_per_chunk(num_cols)
    out = u.new_zeros((kernel.shape[0], num_cols))
    buf = u.new_empty((min(step, num_rows), num_cols))
    for i in range(kernel.shape[0]):
        for r0 in range(0, num_rows, step):
            r1 = min(r0 + step, num_rows)
            chunk = buf[:r1 - r0]
            chunk.copy_(kernel[i, r0:r1])
            out[i] += cpu_mv(chunk, u[i, r0:r1], transpose=True)
    return out
