"""The CPU iteration (``_cpu_step.py``) against the eager one (two separate products)."""
import math
import warnings

import numpy as np
import pytest
import torch

from mmseg_saot.ot import _cpu_step, _loop, sinkhorn
from mmseg_saot.ot._acceleration import RelaxedUpdate, Translation
from mmseg_saot.ot._operators import KernelOperator
from mmseg_saot.ot.costs import DenseCost

F64 = torch.float64


def _problem(storage, batch=2, rows=37, cols=23, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cost = torch.rand(batch, rows, cols, generator=gen) * 2
    log_a = torch.log(torch.rand(batch, rows, generator=gen, dtype=F64) + 0.1)
    log_b = torch.log(torch.rand(batch, cols, generator=gen, dtype=F64) + 0.1)
    log_a[0, :12] = -math.inf  # a first row block of zero weight in problem 0
    log_b[-1, 3] = -math.inf   # and a column of zero weight in the last problem
    op = KernelOperator(DenseCost(cost), log_a, log_b, 0.1, storage)
    f = torch.randn(batch, rows, generator=gen, dtype=F64) * 0.2
    g = torch.randn(batch, cols, generator=gen, dtype=F64) * 0.2
    op.set_epsilon(0.1, torch.zeros_like(f), torch.zeros_like(g))
    return op, f, g


@pytest.mark.parametrize('storage', [torch.float32, torch.float64, torch.float16,
                                     torch.bfloat16])
@pytest.mark.parametrize('rho,omega,use_ti', [((1.0, 1.0), 1.0, True),
                                              ((1.0, 1.0), 1.6, True),
                                              ((0.5, math.inf), 1.3, True),
                                              ((math.inf, math.inf), 1.0, False),
                                              ((2.0, 0.3), 1.7, False)])
def test_iterations_equal_the_eager_ones(storage, rho, omega, use_ti):
    op, f, g = _problem(storage)
    eps = 0.1
    taus = _loop.tau_pair(rho, eps)
    masses = (op.log_a.exp().sum(-1), op.log_b.exp().sum(-1))
    tr_e, tr_c = Translation(op.log_a, op.log_b, *rho), Translation(op.log_a, op.log_b, *rho)
    step = _cpu_step.CpuIteration.create(op, *rho)
    step.rows = 12  # four row blocks, the last one short; all of problem 0's first are empty
    fe, ge, fc, gc = f, g, f.clone(), g.clone()
    tol = 1e-12 if storage == F64 else 1e-6
    for it in range(6):
        if it == 3:  # end of a window: rebuild (new references), rescue-like reset
            op.refresh(fe, ge, force=True)
            tr_e.reset(), tr_c.reset()
        measure = it in (0, 2, 4)
        fe, ge, err = _loop._eager_iteration(op, fe, ge, eps, omega, taus, use_ti, tr_e,
                                             measure, None, masses, op.log_b, rho)
        fc, gc, va, vb = step.iterate(fc, gc, eps, *taus, omega, use_ti, tr_c, measure)
        torch.testing.assert_close(fc, fe, rtol=tol, atol=tol)
        torch.testing.assert_close(gc, ge, rtol=tol, atol=tol)
        if measure:
            err_c = va / masses[0] + vb / masses[1]
            torch.testing.assert_close(err_c, err, rtol=1e-6, atol=1e-12)
        else:
            assert va is None and vb is None
        if use_ti:
            torch.testing.assert_close(torch.as_tensor(tr_c.A), tr_e.A, rtol=tol, atol=tol)
            torch.testing.assert_close(torch.as_tensor(tr_c.B), tr_e.B, rtol=tol, atol=tol)
    assert torch.isfinite(fc).all() and torch.isfinite(gc).all()


def test_iterate_leaves_its_inputs_alone():
    op, f, g = _problem(torch.float32)
    f0, g0 = f.clone(), g.clone()
    step = _cpu_step.CpuIteration.create(op, 1.0, 1.0)
    step.iterate(f, g, 0.1, *_loop.tau_pair((1.0, 1.0), 0.1), 1.5, True,
                 Translation(op.log_a, op.log_b, 1.0, 1.0), True)
    assert torch.equal(f, f0) and torch.equal(g, g0)


def test_translation_on_numpy_equals_torch_and_mixes_with_it():
    gen = torch.Generator().manual_seed(3)
    log_a = torch.log(torch.rand(2, 9, generator=gen, dtype=F64))
    log_b = torch.log(torch.rand(2, 7, generator=gen, dtype=F64))
    log_a[1, :] = -math.inf  # no mass at all: A = -inf in both kinds
    f = torch.randn(2, 9, generator=gen, dtype=F64)
    g = torch.randn(2, 7, generator=gen, dtype=F64)
    tr_t, tr_n = Translation(log_a, log_b, 0.7, 2.0), Translation(log_a, log_b, 0.7, 2.0)
    out_t = tr_t.after_f(f, g)
    out_n = tr_n.after_f(f.numpy(), g.numpy())
    assert isinstance(out_n[0], np.ndarray) and isinstance(tr_n.A, np.ndarray)
    for got, want in zip(out_n, out_t):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-14, equal_nan=True)
    # the numpy cache serves a torch step and the other way round
    out_t = tr_t.after_g(out_t[0], out_t[1])
    out_m = tr_n.after_g(torch.from_numpy(out_n[0]), torch.from_numpy(out_n[1]))
    assert isinstance(tr_n.B, torch.Tensor)
    for got, want in zip(out_m, out_t):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0, equal_nan=True)


def test_a_row_whose_kernel_underflowed_gives_a_non_finite_potential_without_warnings():
    op, f, g = _problem(torch.float32)
    op.kernel[1, 20] = 0.0  # the loop must see it and rescue in the log domain
    step = _cpu_step.CpuIteration.create(op, 1.0, 1.0)
    step.rows = 12
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # numpy's divide-by-zero warning would be one
        f_new, _, _, _ = step.iterate(f, g, 0.1, 1.0, 1.0, 1.0, False, None, False)
    assert not math.isfinite(float(f_new[1, 20]))
    assert torch.isfinite(torch.cat([f_new[1, :20], f_new[1, 21:]])).all()


@pytest.mark.parametrize('dtype,storage', [(F64, None), (torch.float32, None),
                                           (torch.float32, torch.float16)])
def test_the_loop_runs_cpu_kernels_here_and_agrees_with_the_eager_loop(monkeypatch, dtype,
                                                                       storage):
    gen = torch.Generator().manual_seed(0)
    cost = (torch.rand(2, 40, 30, generator=gen, dtype=F64) * 2).to(dtype)
    calls = []
    iterate = _cpu_step.CpuIteration.iterate
    monkeypatch.setattr(_cpu_step.CpuIteration, 'iterate',
                        lambda self, *args: calls.append(1) or iterate(self, *args))
    # fp32 products sum in another order than the eager ones: rounding of fp32 sums
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == F64 else dict(rtol=1e-5, atol=1e-6)
    for kw in (dict(rho=1.0, omega=1.5, tol=0.0, num_iters=60),
               dict(rho=math.inf, tol=0.0, num_iters=60),
               dict(rho=1.0, tol=0.0, num_iters=80, epsilon_scaling=0.5),  # stages
               dict(rho=(0.5, 2.0), tol=1e-9, num_iters=3000)):  # 'auto' relaxation, stop
        calls.clear()
        fast = sinkhorn(cost, epsilon=0.05, warn=False, storage_dtype=storage, **kw)
        assert len(calls) == fast.num_iters
        monkeypatch.setitem(_cpu_step.ENABLED, 'one_pass', False)
        eager = sinkhorn(cost, epsilon=0.05, warn=False, storage_dtype=storage, **kw)
        monkeypatch.setitem(_cpu_step.ENABLED, 'one_pass', True)
        if kw['tol'] == 0.0:
            assert fast.num_iters == eager.num_iters
        torch.testing.assert_close(fast.f, eager.f, **tol)
        torch.testing.assert_close(fast.g, eager.g, **tol)


def test_relaxed_update_into_equals_the_torch_update():
    gen = torch.Generator().manual_seed(1)
    f_old = torch.randn(50, generator=gen, dtype=F64)
    smin = torch.randn(50, generator=gen, dtype=F64)
    for update in (RelaxedUpdate(0.95), RelaxedUpdate(0.95, 1.7)):
        out = torch.empty(50, dtype=F64)
        update.into(f_old.numpy(), smin.clone().numpy(), out.numpy())
        torch.testing.assert_close(out, update(f_old, smin), rtol=1e-15, atol=1e-15)
