"""Dense Sinkhorn at small epsilon (1e-3 .. 5e-3 against costs in [0, 2]).

At these values ``C / eps`` spans up to 2000 e-folds: most entries of a stored fp32
kernel are flushed to zero at a rebuild, and the first iterations from zero
potentials can leave a whole column of the kernel empty. The checks here are what
the solver promises whatever happens inside: finite potentials and plan, a reported
marginal error that is the error of the returned plan, agreement with the float64
solution when it reports convergence, and a usable (or clearly refused) gradient.
"""
import math

import pytest
import torch

from mmseg_saot.ot import sinkhorn, transfer_labels
from mmseg_saot.ot._implicit import SingularSystemError
from mmseg_saot.ot._operators import KernelOperator, LogOperator
from mmseg_saot.ot.costs import DenseCost

F64 = torch.float64
EPSILONS = (1e-3, 2e-3, 5e-3)


def _cost(n, m, seed):
    return torch.rand(n, m, generator=torch.Generator().manual_seed(seed)) * 2


def _exact_marginal_error(res):
    """Relative L1 violation of the marginal conditions of ``res.plan``, in fp64."""
    plan = res.plan.double()
    err = 0.0
    for rho, marg, w, pot in ((res.rho[0], plan.sum(1), res.a, res.f),
                              (res.rho[1], plan.sum(0), res.b, res.g)):
        w, pot = w.double(), pot.double()
        target = w if math.isinf(rho) else w * torch.exp(-pot / rho)
        err += float((marg - target).abs().sum() / w.sum())
    return err


def _assert_finite(res, what):
    assert torch.isfinite(res.f).all() and torch.isfinite(res.g).all(), what
    assert torch.isfinite(res.plan).all(), what
    assert math.isfinite(float(res.marginal_error)), what


@pytest.mark.parametrize('shape', [(5, 7), (300, 200)])
@pytest.mark.parametrize('rho', [math.inf, 1.0])
@pytest.mark.parametrize('storage', [torch.float32, torch.float16])
def test_sweep_finite_honest_and_equal_to_fp64(shape, rho, storage):
    # Tolerances: an fp32 cost rounds C/eps ~ 1e3 by ~6e-5 e-folds, so two solvers of
    # the same fp32 problem agree to ~1e-5 in L1; fp16 kernel entries add 5e-4
    # relative rounding, which moves the plan by ~1e-4.
    plan_tol = 2e-4 if storage == torch.float32 else 5e-4
    exact_tol = 1e-4 if storage == torch.float32 else 1e-3
    for seed in (0, 1, 2):
        cost = _cost(*shape, seed)
        for eps in EPSILONS:
            ref = sinkhorn(cost.double(), epsilon=eps, rho=rho, num_iters=5000, tol=1e-9,
                           warn=False)
            for num_iters in (3, 10, 2000):
                res = sinkhorn(cost, epsilon=eps, rho=rho, num_iters=num_iters,
                               storage_dtype=storage, warn=False)
                what = f'seed={seed} eps={eps} num_iters={num_iters} method={res.method}'
                _assert_finite(res, what)
                exact = _exact_marginal_error(res)
                if bool(res.converged):
                    assert exact < exact_tol, what
                    if bool(ref.converged):
                        dist = float((res.plan.double() - ref.plan).abs().sum())
                        assert dist < plan_tol, what
                else:  # a failed solve reports the error of its plan (to fp32 rounding)
                    assert float(res.marginal_error) == pytest.approx(exact, rel=1e-2,
                                                                      abs=5e-5), what


@pytest.mark.parametrize('kw', [dict(epsilon=0.002), dict(epsilon=0.001),
                                dict(epsilon=0.002, rho=1.0)])
def test_qa_repro_converges_like_the_log_domain(kw):
    # The QA report's problem: fp32 returned an infinite plan (sum 4.4e12 with rho=1)
    # with marginal error 0.17 after 1000 iterations; the log domain converges.
    torch.manual_seed(0)
    cost = torch.rand(5, 7)
    res = sinkhorn(cost, **kw)
    log = sinkhorn(cost, method='log', **kw)
    _assert_finite(res, str(kw))
    assert bool(res.converged) and bool(log.converged)
    # converged means the returned potentials meet tol: the stored fp32 kernel measured
    # itself below 1e-6 at an exact error of 1.1e-5; the log domain finishes the solve
    assert float(res.marginal_error) < 1e-6
    assert res.num_iters <= 1.5 * log.num_iters  # the rescue keeps over-relaxation
    assert float((res.plan - log.plan).abs().sum()) < 1e-4
    out = transfer_labels(res, torch.tensor([0, 1, 2, 0, 1]), 3)
    assert torch.isfinite(out.probs).all() and (out.labels != 255).all()


def test_an_absorbing_kernel_rebuilds_before_flushed_entries_carry_mass():
    # Potentials moving against each other by hundreds of epsilons, in steps below
    # the absorption's rebuild drift: in-place absorption alone keeps at zero the
    # entries flushed at the first build, while their true values come to dominate.
    cost = _cost(5, 7, 0)
    eps = 0.002
    n, m = cost.shape
    log_a = torch.full((1, n), -math.log(n), dtype=F64)
    log_b = torch.full((1, m), -math.log(m), dtype=F64)
    kernel = KernelOperator(DenseCost(cost), log_a, log_b, eps, torch.float32)
    exact = LogOperator(DenseCost(cost), log_a, log_b, eps)
    g = torch.zeros(1, m, dtype=F64)
    kernel.set_epsilon(eps, exact.softmin_rows(g), g)
    direction = torch.linspace(-1, 1, m, dtype=F64).unsqueeze(0)
    for step in range(1, 40):
        g = direction * (20 * eps * step)  # row exponents move by up to 40 eps apart
        f = exact.softmin_rows(g)
        kernel.refresh(f, g)
        # the f-update's softmin: the rows' maxima at the build are 1, no row is empty
        torch.testing.assert_close(kernel.softmin_rows(g), f, atol=1e-6, rtol=0,
                                   msg=f'step {step}')


def test_gradient_at_small_epsilon_is_finite_or_refused_clearly():
    cost = _cost(5, 7, 0).requires_grad_()
    weights = torch.randn(5, 7, generator=torch.Generator().manual_seed(1))
    res = sinkhorn(cost, epsilon=0.002, num_iters=2000)
    assert bool(res.converged)
    grad, = torch.autograd.grad((res.plan * weights).sum(), cost)
    assert torch.isfinite(grad).all()
    # 10 iterations at eps=1e-3: the plan's support splits into disconnected blocks
    res = sinkhorn(cost, epsilon=0.001, num_iters=10, warn=False)
    _assert_finite(res, 'num_iters=10')
    with pytest.raises(SingularSystemError, match=r'epsilon=0.001, num_iters=10'):
        torch.autograd.grad((res.plan * weights).sum(), cost)


def test_an_underflowed_kernel_raises_no_numpy_warning():
    # the fused CPU step took log 0 (and inf - inf) without numpy's errstate: under
    # -W error (warnings as errors) the solve raised instead of going to the log domain
    import warnings

    from mmseg_saot.ot import cosine_cost
    gen = torch.Generator().manual_seed(0)
    cost = cosine_cost(torch.randn(60, 16, generator=gen), torch.randn(40, 16, generator=gen))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = sinkhorn(cost, epsilon=1e-3, rho=1.0, tol=1e-6, num_iters=300, warn=False)
    assert res.method == 'kernel+log'
    _assert_finite(res, 'eps 1e-3')
