"""The fused Triton iteration (``_fused_step.py``) against the eager one.

On CPU the kernels run in Triton's interpreter: ``TRITON_INTERPRET=1`` must be set
before Triton is imported, so those checks run in subprocesses (their names say
``interpreter``; ``-k "not interpreter"`` leaves them out on a GPU machine). The
CUDA checks compare both paths on the GPU and are skipped without one.

Tolerances: both paths accumulate the products in fp32 in different orders, so
potentials agree to fp32 rounding of the products: ``rtol 1e-5`` with ``atol 5e-7``
(cost units, 1e-5 epsilon) after 100 iterations; one iteration to ``1e-7``.
"""
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytest.importorskip('triton')

ROOT = Path(__file__).resolve().parents[2]
PRELUDE = textwrap.dedent('''
    import math, sys, torch
    sys.path.insert(0, 'tools')
    from run_ot_tests import import_ot_alone
    ot = import_ot_alone()
    from mmseg_saot.ot import _cpu_step, _fused_step, _loop
    from mmseg_saot.ot._acceleration import Translation
    from mmseg_saot.ot._operators import KernelOperator
    from mmseg_saot.ot.costs import DenseCost
    torch.set_num_threads(1)
    _cpu_step.ENABLED['one_pass'] = False  # CPU tensors: the reference is the eager loop
    F64 = torch.float64
''')

# One iteration at a time, with measurement, a kernel rebuild and a translation reset
# in between: potentials, violations and the translation cache equal the eager ones.
ITERATION_CHECKS = textwrap.dedent('''
    def case(storage, batch, rho, omega, use_ti, products):
        gen = torch.Generator().manual_seed(batch)
        n, m, eps = 37, 21, 0.1  # 5 row programs, partial blocks
        cost = torch.rand(batch, n, m, generator=gen, dtype=F64)
        log_a = torch.log(torch.rand(batch, n, generator=gen, dtype=F64) + 0.1)
        log_b = torch.log(torch.rand(batch, m, generator=gen, dtype=F64) + 0.1) - 0.5
        log_a[:, 3] = -math.inf  # a zero-mass point
        op = KernelOperator(DenseCost(cost), log_a, log_b, eps, storage)
        f = 0.1 * torch.randn(batch, n, generator=gen, dtype=F64)
        g = 0.1 * torch.randn(batch, m, generator=gen, dtype=F64)
        op.set_epsilon(eps, f, g)
        taus = _loop.tau_pair(rho, eps)
        masses = (log_a.exp().sum(-1), log_b.exp().sum(-1))
        tr_e, tr_f = Translation(log_a, log_b, *rho), Translation(log_a, log_b, *rho)
        _fused_step.FP32_PRODUCTS['name'] = products
        fused = _fused_step.FusedIteration.create(op, *rho)
        assert fused is not None
        assert fused.cublas == (products == 'cublas' and storage == torch.float32)
        fe, ge, ff, gf = f, g, f, g
        for it in range(6):
            if it == 3:  # end of a window: rebuild (new references), rescue-like reset
                op.refresh(fe, ge, force=True)
                tr_e.reset(), tr_f.reset()
            measure = it in (0, 2, 4)
            fe, ge, err = _loop._eager_iteration(op, fe, ge, eps, omega, taus, use_ti, tr_e,
                                                 measure, None, masses, log_b, rho)
            ff, gf, va, vb = fused.iterate(ff, gf, eps, *taus, omega, use_ti, tr_f, measure)
            torch.testing.assert_close(ff, fe, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(gf, ge, rtol=1e-6, atol=1e-7)
            if measure:
                err_f = (torch.nan_to_num(va / masses[0], nan=math.inf) +
                         torch.nan_to_num(vb / masses[1], nan=math.inf))
                torch.testing.assert_close(err_f, err, rtol=1e-5, atol=1e-9)
            else:
                assert va is None and vb is None
            if use_ti:
                torch.testing.assert_close(tr_f.A, tr_e.A, rtol=1e-6, atol=1e-8)
                torch.testing.assert_close(tr_f.B, tr_e.B, rtol=1e-6, atol=1e-8)

    case(torch.float32, 2, (1.0, 1.0), 1.5, True, 'triton')
    case(torch.float32, 1, (0.5, math.inf), 1.0, True, 'cublas')
    case(torch.float16, 1, (math.inf, math.inf), 1.0, False, 'triton')
    case(torch.bfloat16, 2, (2.0, 0.3), 1.7, True, 'triton')
    case(torch.float16, 2, (1.0, 1.0), 1.2, False, 'triton')
    print('ok')
''')

# Whole solves, fused (default) against eager (ENABLED off), fp64 cost so that the
# returned potentials are not rounded to fp32.
SOLVE_CHECKS = textwrap.dedent('''
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 24, 8, generator=gen, dtype=F64)
    y = torch.randn(2, 19, 8, generator=gen, dtype=F64)
    costs = torch.stack([ot.cosine_cost(x[i], y[i]) for i in range(2)])

    def both(cost, **kw):
        _fused_step.ENABLED['fused'] = True
        fused = ot.sinkhorn(cost, warn=False, **kw)
        _fused_step.ENABLED['fused'] = False
        eager = ot.sinkhorn(cost, warn=False, **kw)
        _fused_step.ENABLED['fused'] = True
        assert fused.num_iters == eager.num_iters
        torch.testing.assert_close(fused.f, eager.f, rtol=1e-5, atol=5e-7)
        torch.testing.assert_close(fused.g, eager.g, rtol=1e-5, atol=5e-7)
        return fused, eager

    # 30 iterations: each interpreted one takes ~40 ms (the suite's slowest test ran 100)
    fixed = dict(epsilon=0.05, tol=0.0, num_iters=30)
    # one window: the kernel is built once, identical in both runs
    both(costs, rho=1.0, omega=1.5, storage_dtype=torch.float32, check_every=30, **fixed)
    # three windows of 10: refreshes, relaxation from the second window on
    both(costs[0], rho=math.inf, omega=1.0, storage_dtype=torch.float16, **fixed)
    both(costs, rho=(0.5, math.inf), omega=1.3, storage_dtype=torch.bfloat16, **fixed)
    both(costs[1], rho=1.0, omega=1.0, translation_invariant=False,
         storage_dtype=torch.float32, **fixed)
    # measured windows drive 'auto' relaxation and the stopping test
    fused, eager = both(costs, rho=2.0, tol=1e-5, num_iters=500, epsilon=0.05,
                        storage_dtype=torch.float32)
    assert bool(fused.converged.all()) and bool(eager.converged.all())
    # tiny epsilon: the fp16 kernel fails, the window is redone in the log domain and
    # the fused iteration takes over again from the rescued potentials
    a = torch.rand(24, generator=gen, dtype=F64)
    a[:4] = 0
    fused, eager = both(costs[0].clamp(0, 2), a=a, epsilon=1e-3, rho=1.0, tol=0.0,
                        num_iters=30, storage_dtype=torch.float16)
    assert fused.method == eager.method
    print('ok')
''')


def _run_interpreted(script: str):
    env = dict(os.environ, TRITON_INTERPRET='1')
    proc = subprocess.run([sys.executable, '-c', PRELUDE + script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith('ok')


def test_fused_iteration_equals_eager_iteration_in_the_interpreter():
    _run_interpreted(ITERATION_CHECKS)


def test_fused_solves_equal_eager_solves_in_the_interpreter():
    _run_interpreted(SOLVE_CHECKS)


# ----------------------------------------------------------------------------- CUDA

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')


def _cuda_costs(batch, n, m, seed=0):
    from mmseg_saot.ot import cosine_cost
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 32, generator=gen, dtype=torch.float64)
    y = torch.randn(batch, m, 32, generator=gen, dtype=torch.float64)
    return torch.stack([cosine_cost(x[i], y[i]) for i in range(batch)]).cuda()


def _fused_and_eager(cost, monkeypatch, **kw):
    from mmseg_saot.ot import _fused_step, sinkhorn
    fused = sinkhorn(cost, warn=False, **kw)
    monkeypatch.setitem(_fused_step.ENABLED, 'fused', False)
    eager = sinkhorn(cost, warn=False, **kw)
    monkeypatch.setitem(_fused_step.ENABLED, 'fused', True)
    return fused, eager


@cuda
@pytest.mark.parametrize('storage', [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize('batched,rho,omega,ti', [(True, 1.0, 1.5, True),
                                                  (False, math.inf, 1.0, True),
                                                  (True, (0.5, math.inf), 1.3, True),
                                                  (False, 1.0, 1.0, False)])
def test_fused_equals_eager_on_cuda(storage, batched, rho, omega, ti, monkeypatch):
    from mmseg_saot.ot import _fused_step
    from mmseg_saot.ot._operators import KernelOperator
    from mmseg_saot.ot.costs import DenseCost
    cost = _cuda_costs(2, 700, 450)
    cost = cost if batched else cost[0]
    cost3 = cost if batched else cost.unsqueeze(0)
    log_w = [torch.zeros(cost3.shape[0], k, dtype=torch.float64, device='cuda')
             for k in cost3.shape[1:]]
    assert _fused_step.usable(KernelOperator(DenseCost(cost3), *log_w, 0.05, storage))
    # one check window: the kernel is built once from the same potentials in both runs
    kw = dict(epsilon=0.05, rho=rho, omega=omega, translation_invariant=ti, tol=0.0,
              num_iters=100, check_every=100, storage_dtype=storage)
    fused, eager = _fused_and_eager(cost, monkeypatch, **kw)
    torch.testing.assert_close(fused.f, eager.f, rtol=1e-5, atol=5e-7)
    torch.testing.assert_close(fused.g, eager.g, rtol=1e-5, atol=5e-7)


@cuda
@pytest.mark.parametrize('storage', [torch.float32, torch.float16])
def test_fused_default_solve_on_cuda(storage, monkeypatch):
    cost = _cuda_costs(1, 2000, 1500, seed=1)[0].float()
    fused, eager = _fused_and_eager(cost, monkeypatch, epsilon=0.05, rho=1.0, tol=1e-5,
                                    num_iters=2000, storage_dtype=storage)
    assert bool(fused.converged) and bool(eager.converged)
    assert abs(fused.num_iters - eager.num_iters) <= 30  # rounding may move a stop by a window
    mass = eager.plan.sum()
    assert float((fused.plan - eager.plan).abs().sum() / mass) < 1e-3


@cuda
def test_fused_cublas_products_on_cuda(monkeypatch):
    from mmseg_saot.ot import _fused_step
    monkeypatch.setitem(_fused_step.FP32_PRODUCTS, 'name', 'cublas')
    cost = _cuda_costs(2, 500, 300, seed=2)
    fused, eager = _fused_and_eager(cost, monkeypatch, epsilon=0.05, rho=1.0, omega=1.5,
                                    tol=0.0, num_iters=100, check_every=100,
                                    storage_dtype=torch.float32)
    torch.testing.assert_close(fused.f, eager.f, rtol=1e-5, atol=5e-7)
    torch.testing.assert_close(fused.g, eager.g, rtol=1e-5, atol=5e-7)
