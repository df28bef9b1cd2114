"""Triton kernels of ``_triton_matvec.py`` (imported lazily: Triton costs ~0.2-0.7 s to import).

* rows: a program owns ``BLOCK_R`` rows and streams across the columns.
* cols: a program owns ``BLOCK_C`` columns of one row range and writes a partial sum.
"""
import triton
import triton.language as tl


@triton.jit
def rows_kernel(k_ptr, w_ptr, out_ptr, n_rows, n_cols, stride_kb, stride_kr, stride_wb,
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
def cols_kernel(k_ptr, u_ptr, part_ptr, n_rows, n_cols, rows_per_split, stride_kb,
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
