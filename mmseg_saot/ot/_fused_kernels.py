"""Triton kernels of the fused Sinkhorn iteration (``_fused_step.py``); imported lazily.

One iteration of ``_loop._run`` on a stored kernel becomes five launches:

1. ``rows_step_kernel``: ``s = K w`` for a block of rows, then the f half-step
   ``f <- lerp(f, tau_a smin_a(g), omega)`` and per-program partials;
2. ``prep_cols_kernel``: the translation step after f (``after_f``) and the fp32
   column weights ``u = exp(z - max z)``, ``z = (f - f_hat)/eps + log a``;
3. ``_triton_kernels.cols_kernel``: split partial sums of ``K^T u``;
4. ``cols_step_kernel``: sum of the splits, the g half-step and partials;
5. ``prep_rows_kernel``: the translation step after g (``after_g``) and the row
   weights ``w`` of the next iteration.

Global reductions (the max shift of a softmin, the log-sums of the translation step,
the marginal violation) are written as one partial per program and reduced by every
program of the next kernel in the same fixed order: deterministic, no atomics.

Layouts: potentials, weights and references are fp64 ``(B, L)`` rows with batch
stride ``stride_vb``; ``params`` is the fp64 vector ``PARAM_*`` of ``_fused_step``;
``scal`` is fp64 ``(B, 8)`` per-problem scalars (slots ``SLOT_*`` of ``_fused_step``);
``part`` is fp64 ``(4, B, P)``: kinds 0 = max of z, 1/2 = log-sum-exp (max, sum)
of ``log w - x / rho``, 3 = marginal violation.
"""
import triton
import triton.language as tl

NEG_INF = tl.constexpr(float('-inf'))  # a jit function reads only constexpr globals


@triton.jit
def _safe(m):
    """A finite shift for ``exp(v - m)``: 0 when the block is empty (``m = -inf``)."""
    return tl.where(m == NEG_INF, 0.0, m)


@triton.jit
def _reduce_max(ptr, n_part, PBLOCK: tl.constexpr):
    """Max of ``n_part`` fp64 partials at ``ptr``."""
    acc = tl.full((PBLOCK,), NEG_INF, tl.float64)
    for p0 in range(0, n_part, PBLOCK):
        idx = p0 + tl.arange(0, PBLOCK)
        acc = tl.maximum(acc, tl.load(ptr + idx, mask=idx < n_part, other=NEG_INF))
    return tl.max(acc, axis=0)


@triton.jit
def _reduce_lse(max_ptr, sum_ptr, n_part, PBLOCK: tl.constexpr):
    """``log sum exp`` from per-program pairs (max, sum exp(v - max)), online rescaling."""
    vm = tl.full((PBLOCK,), NEG_INF, tl.float64)
    vs = tl.zeros((PBLOCK,), tl.float64)
    for p0 in range(0, n_part, PBLOCK):
        idx = p0 + tl.arange(0, PBLOCK)
        ok = idx < n_part
        pm = tl.load(max_ptr + idx, mask=ok, other=NEG_INF)
        ps = tl.load(sum_ptr + idx, mask=ok, other=0.0)
        new = tl.maximum(vm, pm)
        vs = vs * tl.exp(vm - _safe(new)) + ps * tl.exp(pm - _safe(new))
        vm = new
    top = tl.max(vm, axis=0)
    return top + tl.log(tl.sum(vs * tl.exp(vm - _safe(top)), axis=0))


@triton.jit
def _write_partials(part_ptr, stride_pk, x, x_hat, log_w, ok, eps, inv_rho, USE_TI: tl.constexpr):
    """Partials of a new potential ``x``: max of the softmin exponent ``z`` of the next
    half-step and, for the translation step, (max, sum) of ``log w - x / rho``."""
    z = tl.where(ok, (x - x_hat) / eps + log_w, NEG_INF)
    tl.store(part_ptr, tl.max(z, axis=0))
    if USE_TI:
        v = tl.where(ok, log_w - x * inv_rho, NEG_INF)
        vmax = tl.max(v, axis=0)
        tl.store(part_ptr + stride_pk, vmax)
        tl.store(part_ptr + 2 * stride_pk, tl.sum(tl.exp(v - _safe(vmax)), axis=0))


@triton.jit
def _violation(x_old, smin, log_w, ok, eps, inv_rho):
    """``|w e^{(x - smin)/eps} - w e^{-x/rho}|`` summed over valid entries (``row_violation``)."""
    gap = tl.abs(tl.exp(log_w + (x_old - smin) / eps) - tl.exp(log_w - x_old * inv_rho))
    return tl.sum(tl.where(ok & (log_w > NEG_INF), gap, 0.0), axis=0)


@triton.jit
def _relax(x_old, target, omega, RELAXED: tl.constexpr):
    """``torch.lerp(x_old, target, omega)`` (its ``weight >= 0.5`` branch), or ``target``."""
    out = target
    if RELAXED:
        out = target - (target - x_old) * (1.0 - omega)
    return out


@triton.jit
def rows_step_kernel(k_ptr, w_ptr, s_ptr, f_ptr, fhat_ptr, loga_ptr, par_ptr, scal_ptr, part_ptr,
                     n_rows, n_cols, stride_kb, stride_kr, stride_wb, stride_vb, stride_pk,
                     stride_pb, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
                     PRODUCT_DONE: tl.constexpr, RELAXED: tl.constexpr, USE_TI: tl.constexpr,
                     MEASURE: tl.constexpr):
    """f half-step for ``BLOCK_R`` rows of problem ``program_id(0)``; f updated in place.

    ``s = K w`` (``K`` (B, N, M) any float storage, ``w`` fp32 (B, M), fp32 sums), or read
    from ``s_ptr`` (fp32 (B, N)) if ``PRODUCT_DONE``; then
    ``smin = f_hat - eps (log s + m_rows)``, ``f <- lerp(f, tau_a smin, omega)``.
    """
    batch = tl.program_id(0)
    pid = tl.program_id(1)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    ok = rows < n_rows
    if PRODUCT_DONE:
        acc = tl.load(s_ptr + batch * n_rows + rows, mask=ok, other=1.0)
    else:
        row_ptr = k_ptr + batch.to(tl.int64) * stride_kb + rows.to(tl.int64)[:, None] * stride_kr
        acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
        for c0 in range(0, n_cols, BLOCK_C):
            cols = c0 + tl.arange(0, BLOCK_C)
            col_ok = cols < n_cols
            k = tl.load(row_ptr + cols[None, :], mask=ok[:, None] & col_ok[None, :], other=0.0)
            w = tl.load(w_ptr + batch * stride_wb + cols, mask=col_ok, other=0.0)
            acc += tl.sum(k.to(tl.float32) * w[None, :], axis=1)
    eps = tl.load(par_ptr + 0)
    tau = tl.load(par_ptr + 1)
    omega = tl.load(par_ptr + 3)
    inv_rho = tl.load(par_ptr + 4)
    m = tl.load(scal_ptr + batch * 8 + 6)  # SLOT_M_ROWS: max shift of w
    vec = batch * stride_vb + rows
    f_old = tl.load(f_ptr + vec, mask=ok, other=0.0)
    f_hat = tl.load(fhat_ptr + vec, mask=ok, other=0.0)
    log_a = tl.load(loga_ptr + vec, mask=ok, other=NEG_INF)
    # smin_a(g)_i = f_hat_i - eps (log (K w)_i + m): the softmin_rows epilogue
    smin = f_hat - eps * (tl.log(acc.to(tl.float64)) + m)
    part = part_ptr + batch * stride_pb + pid
    if MEASURE:  # row marginal violation of the current iterate (before the update)
        tl.store(part + 3 * stride_pk, _violation(f_old, smin, log_a, ok, eps, inv_rho))
    f_new = _relax(f_old, tau * smin, omega, RELAXED)
    tl.store(f_ptr + vec, f_new, mask=ok)
    _write_partials(part, stride_pk, f_new, f_hat, log_a, ok, eps, inv_rho, USE_TI)


@triton.jit
def prep_cols_kernel(f_ptr, fhat_ptr, loga_ptr, u_ptr, par_ptr, scal_ptr, part_ptr, n_rows,
                     n_part, stride_vb, stride_ub, stride_pk, stride_pb, BLOCK: tl.constexpr,
                     PBLOCK: tl.constexpr, USE_TI: tl.constexpr):
    """After the f half-step: translation ``(f + lam, g - lam)`` and column weights ``u``.

    Every program reduces the rows' partials identically; program 0 stores the scalars.
    ``u = exp(z - max z)`` in fp32 from the untranslated f (as ``softmin_cols`` in
    ``Operator.step``); the translation reaches the g half-step as ``t - lam``.
    """
    batch = tl.program_id(0)
    pid = tl.program_id(1)
    eps = tl.load(par_ptr + 0)
    part = part_ptr + batch * stride_pb
    zmax = _reduce_max(part, n_part, PBLOCK)
    scal = scal_ptr + batch * 8
    first = pid == 0
    if USE_TI:  # Translation.after_f: A fresh, B cached; lam = kappa (A - B)
        big_a = _reduce_lse(part + stride_pk, part + 2 * stride_pk, n_part, PBLOCK)
        big_b = tl.load(scal + 1)
        lam = tl.load(par_ptr + 6) * (big_a - big_b)
        tl.store(scal + 2, big_a - lam * tl.load(par_ptr + 4), mask=first)
        tl.store(scal + 3, big_b + lam * tl.load(par_ptr + 5), mask=first)
        tl.store(scal + 4, lam, mask=first)
    tl.store(scal + 5, zmax, mask=first)  # SLOT_M_COLS
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    ok = idx < n_rows
    vec = batch * stride_vb + idx
    f = tl.load(f_ptr + vec, mask=ok, other=0.0)
    z = (f - tl.load(fhat_ptr + vec, mask=ok, other=0.0)) / eps + tl.load(
        loga_ptr + vec, mask=ok, other=NEG_INF)
    tl.store(u_ptr + batch * stride_ub + idx, tl.exp(z - _safe(zmax)).to(tl.float32), mask=ok)
    if USE_TI:
        tl.store(f_ptr + vec, f + lam, mask=ok)


@triton.jit
def cols_step_kernel(cpart_ptr, n_splits, g_ptr, ghat_ptr, logb_ptr, par_ptr, scal_ptr, part_ptr,
                     n_cols, stride_cb, stride_cs, stride_vb, stride_pk, stride_pb,
                     BLOCK: tl.constexpr, RELAXED: tl.constexpr, USE_TI: tl.constexpr,
                     MEASURE: tl.constexpr):
    """g half-step for ``BLOCK`` columns: ``t = K^T u`` from fp32 split partials
    ``(B, n_splits, M)``, ``t = g_hat - eps (log t + m_cols) - lam``,
    ``g <- lerp(g - lam, tau_b t, omega)`` in place, and the partials of the new g."""
    batch = tl.program_id(0)
    pid = tl.program_id(1)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    ok = idx < n_cols
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for sp in range(0, n_splits):  # fixed order: deterministic
        acc += tl.load(cpart_ptr + batch * stride_cb + sp * stride_cs + idx, mask=ok, other=0.0)
    eps = tl.load(par_ptr + 0)
    tau = tl.load(par_ptr + 2)
    omega = tl.load(par_ptr + 3)
    inv_rho = tl.load(par_ptr + 5)
    scal = scal_ptr + batch * 8
    vec = batch * stride_vb + idx
    g_old = tl.load(g_ptr + vec, mask=ok, other=0.0)
    g_hat = tl.load(ghat_ptr + vec, mask=ok, other=0.0)
    log_b = tl.load(logb_ptr + vec, mask=ok, other=NEG_INF)
    t = g_hat - eps * (tl.log(acc.to(tl.float64)) + tl.load(scal + 5))
    if USE_TI:  # after_f moved f by +lam: smin_b(f + lam) = smin_b(f) - lam, g by -lam
        lam = tl.load(scal + 4)
        t = t - lam
        g_old = g_old - lam
    part = part_ptr + batch * stride_pb + pid
    if MEASURE:
        tl.store(part + 3 * stride_pk, _violation(g_old, t, log_b, ok, eps, inv_rho))
    g_new = _relax(g_old, tau * t, omega, RELAXED)
    tl.store(g_ptr + vec, g_new, mask=ok)
    _write_partials(part, stride_pk, g_new, g_hat, log_b, ok, eps, inv_rho, USE_TI)


@triton.jit
def prep_rows_kernel(g_ptr, ghat_ptr, logb_ptr, w_ptr, f_ptr, par_ptr, scal_ptr, part_ptr,
                     n_cols, n_rows, n_part, stride_gb, stride_wb, stride_fb, stride_pk,
                     stride_pb, BLOCK: tl.constexpr, PBLOCK: tl.constexpr, SHIFT: tl.constexpr):
    """After the g half-step: translation (if ``SHIFT``) and the next row weights ``w``.

    ``Translation.after_g``: B fresh from the partials, A from slot 2;
    ``(f, g) <- (f + lam, g - lam)`` in place. Then ``w = exp(z - m)`` in fp32 with
    ``z = (g - g_hat)/eps + log b`` and ``m = max z`` (from the partials, moved by
    ``-lam/eps``). Without ``SHIFT`` this only prepares ``w`` (start of a fused run).
    """
    batch = tl.program_id(0)
    pid = tl.program_id(1)
    eps = tl.load(par_ptr + 0)
    part = part_ptr + batch * stride_pb
    m = _reduce_max(part, n_part, PBLOCK)
    scal = scal_ptr + batch * 8
    first = pid == 0
    if SHIFT:
        big_b = _reduce_lse(part + stride_pk, part + 2 * stride_pk, n_part, PBLOCK)
        big_a = tl.load(scal + 2)
        lam = tl.load(par_ptr + 6) * (big_a - big_b)
        tl.store(scal + 0, big_a - lam * tl.load(par_ptr + 4), mask=first)
        tl.store(scal + 1, big_b + lam * tl.load(par_ptr + 5), mask=first)
        m = m - lam / eps
    tl.store(scal + 6, m, mask=first)  # SLOT_M_ROWS
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    ok = idx < n_cols
    vec = batch * stride_gb + idx
    g = tl.load(g_ptr + vec, mask=ok, other=0.0)
    if SHIFT:
        g = g - lam
        tl.store(g_ptr + vec, g, mask=ok)
        f_ok = idx < n_rows
        f_vec = batch * stride_fb + idx
        tl.store(f_ptr + f_vec, tl.load(f_ptr + f_vec, mask=f_ok, other=0.0) + lam, mask=f_ok)
    z = (g - tl.load(ghat_ptr + vec, mask=ok, other=0.0)) / eps + tl.load(
        logb_ptr + vec, mask=ok, other=NEG_INF)
    tl.store(w_ptr + batch * stride_wb + idx, tl.exp(z - _safe(m)).to(tl.float32), mask=ok)


@triton.jit
def zmax_partials_kernel(x_ptr, xhat_ptr, logw_ptr, par_ptr, part_ptr, n, stride_vb, stride_pb,
                         BLOCK: tl.constexpr):
    """Partial maxima of ``z = (x - x_hat)/eps + log w`` (start of a fused run)."""
    batch = tl.program_id(0)
    pid = tl.program_id(1)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    ok = idx < n
    vec = batch * stride_vb + idx
    z = (tl.load(x_ptr + vec, mask=ok, other=0.0) - tl.load(xhat_ptr + vec, mask=ok, other=0.0)
         ) / tl.load(par_ptr + 0) + tl.load(logw_ptr + vec, mask=ok, other=NEG_INF)
    tl.store(part_ptr + batch * stride_pb + pid, tl.max(tl.where(ok, z, NEG_INF), axis=0))
