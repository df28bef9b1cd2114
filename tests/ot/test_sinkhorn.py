"""Mathematical checks of the dense entropic (unbalanced) Sinkhorn solver."""
import importlib
import math
import re
import warnings

import pytest
import torch

from mmseg_saot.ot import SinkhornConvergenceWarning, cosine_cost, sinkhorn, transfer_labels
from mmseg_saot.ot import _implicit, _loop, _stall
from mmseg_saot.ot.synthetic import ClusteredFeatures

F64 = torch.float64


def _problem(n=30, m=40, seed=0, dtype=F64, scale=2.0, mass_b=1.0):
    gen = torch.Generator().manual_seed(seed)
    cost = torch.rand(n, m, generator=gen, dtype=dtype) * scale
    a = torch.rand(n, generator=gen, dtype=dtype) + 0.1
    b = torch.rand(m, generator=gen, dtype=dtype) + 0.1
    return cost, a / a.sum(), mass_b * b / b.sum()


def _pot_plan(cost, a, b, epsilon, rho):
    ot = pytest.importorskip('ot')
    if ot.__version__ != '0.9.5':
        pytest.skip(f'results are pinned to POT 0.9.5, found {ot.__version__}')
    reg_m = list(rho) if isinstance(rho, tuple) else rho
    plan = ot.unbalanced.sinkhorn_unbalanced(a.numpy(), b.numpy(), cost.numpy(), epsilon, reg_m,
                                             reg_type='kl', numItermax=200000, stopThr=1e-15)
    return torch.as_tensor(plan)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('rho', [math.inf, 1.0, 0.1, (0.5, math.inf), (2.0, 0.3)])
def test_agrees_with_pot(seed, rho):
    cost, a, b = _problem(seed=seed, mass_b=1.0 if rho == math.inf else 1.7)
    res = sinkhorn(cost, a, b, epsilon=0.1, rho=rho, tol=1e-13, num_iters=20000)
    assert bool(res.converged)
    ref = _pot_plan(cost, a, b, 0.1, rho)
    torch.testing.assert_close(res.plan, ref, atol=1e-10, rtol=1e-7)


def test_balanced_marginals_at_convergence():
    cost, a, b = _problem(n=50, m=20, seed=3)
    res = sinkhorn(cost, a, b, epsilon=0.05, tol=1e-12, num_iters=20000)
    rows, cols = res.marginals()
    torch.testing.assert_close(rows, a, atol=1e-11, rtol=0)
    torch.testing.assert_close(cols, b, atol=1e-11, rtol=0)
    assert float(res.marginal_error) < 1e-12


def test_unbalanced_first_order_conditions():
    cost, a, b = _problem(seed=4, mass_b=3.0)
    rho = (0.7, 1.3)
    res = sinkhorn(cost, a, b, epsilon=0.05, rho=rho, tol=1e-12, num_iters=20000)
    rows, cols = res.marginals()
    torch.testing.assert_close(rows, a * torch.exp(-res.f / rho[0]), atol=1e-11, rtol=0)
    torch.testing.assert_close(cols, b * torch.exp(-res.g / rho[1]), atol=1e-11, rtol=0)


def test_planted_permutation_recovered_as_epsilon_shrinks():
    linear_sum_assignment = pytest.importorskip('scipy.optimize').linear_sum_assignment
    n = 25
    gen = torch.Generator().manual_seed(5)
    perm = torch.randperm(n, generator=gen)
    cost = 0.5 + 1.5 * torch.rand(n, n, generator=gen, dtype=F64)
    cost[torch.arange(n), perm] = torch.rand(n, generator=gen, dtype=F64) * 0.4
    rows, cols = linear_sum_assignment(cost.numpy())
    assert (torch.as_tensor(cols) == perm).all()  # the planted permutation is optimal
    optimum = float(cost[torch.arange(n), perm].mean())
    gaps = []
    for eps in (0.1, 0.03, 0.01):
        with warnings.catch_warnings():  # balanced, small epsilon: slow final digits
            warnings.simplefilter('ignore', SinkhornConvergenceWarning)
            plan = sinkhorn(cost, epsilon=eps, tol=1e-7, num_iters=1500).plan
        gaps.append(float((plan * cost).sum()) - optimum)
    assert (plan.argmax(1) == perm).all()
    assert float(plan[torch.arange(n), perm].sum()) > 0.999
    assert all(g1 > g2 for g1, g2 in zip(gaps, gaps[1:]))  # <P, C> -> optimum
    assert gaps[-1] < 1e-3


def test_large_rho_tends_to_balanced():
    cost, a, b = _problem(seed=6)
    bal = sinkhorn(cost, a, b, epsilon=0.1, tol=1e-12, num_iters=20000).plan
    near = sinkhorn(cost, a, b, epsilon=0.1, rho=1e5, tol=1e-12, num_iters=20000).plan
    far = sinkhorn(cost, a, b, epsilon=0.1, rho=1.0, tol=1e-12, num_iters=20000).plan
    assert float((near - bal).abs().sum()) < 1e-4
    assert float((far - bal).abs().sum()) > 1e-2


def test_constant_shift_balanced_invariant_unbalanced_not():
    cost, a, b = _problem(seed=7)
    for rho, same in ((math.inf, True), (1.0, False)):
        p1 = sinkhorn(cost, a, b, epsilon=0.1, rho=rho, tol=1e-12, num_iters=20000).plan
        p2 = sinkhorn(cost + 3.7, a, b, epsilon=0.1, rho=rho, tol=1e-12, num_iters=20000).plan
        assert (float((p1 - p2).abs().max()) < 1e-12) == same


@pytest.mark.parametrize('storage, tol', [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_storage_agrees_with_fp32(storage, tol):
    # Stated tolerance: L1 distance between plans of total mass ~1 below 2e-3 (fp16,
    # 11-bit kernel entries) and 1e-2 (bf16, 8-bit); accumulation stays fp32.
    gen = torch.Generator().manual_seed(8)
    x, y = torch.randn(200, 32, generator=gen), torch.randn(150, 32, generator=gen)
    cost = cosine_cost(x, y)
    ref = sinkhorn(cost, epsilon=0.05, rho=1.0, tol=1e-7).plan
    res = sinkhorn(cost, epsilon=0.05, rho=1.0, tol=1e-7, storage_dtype=storage)
    assert res.plan.dtype == torch.float32
    assert float((res.plan - ref).abs().sum()) < tol
    assert float(res.marginal_error) < 1e-5


@pytest.mark.parametrize('cost_dtype, storage', [(torch.float32, None),
                                                 (torch.float32, torch.float16),
                                                 (torch.float32, torch.bfloat16),
                                                 (torch.float16, None)])
@pytest.mark.parametrize('rho', [math.inf, 1.0])
def test_no_nan_or_inf_down_to_small_epsilon(cost_dtype, storage, rho):
    cost = (torch.rand(120, 90, generator=torch.Generator().manual_seed(10)) * 2).to(cost_dtype)
    for eps in (0.05, 1e-2, 1e-3):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', SinkhornConvergenceWarning)
            res = sinkhorn(cost, epsilon=eps, rho=rho, num_iters=300, tol=1e-6,
                           storage_dtype=storage)
        plan = res.plan
        assert torch.isfinite(res.f).all() and torch.isfinite(res.g).all()
        assert torch.isfinite(plan).all()
        assert float(res.marginal_error) < 1e-2  # a meaningful plan, not a degenerate one


@pytest.mark.parametrize('name, bad, word', [('cost', 'nan', 'NaN'), ('cost', 'inf', 'inf'),
                                             ('a', 'nan', 'NaN'), ('b', '-inf', 'inf')])
def test_non_finite_input_raises_naming_it(name, bad, word):
    cost, a, b = _problem(n=5, m=4)
    args = {'cost': cost.clone(), 'a': a.clone(), 'b': b.clone()}
    args[name][1] = float(bad)
    with pytest.raises(ValueError, match=f'`{name}` contains {word}'):
        sinkhorn(args['cost'], args['a'], args['b'], epsilon=0.1)


def test_shape_mismatches_raise_clear_errors():
    cost, a, b = _problem(n=5, m=4)
    with pytest.raises(ValueError, match=r'`a` must have shape \(5,\).*got shape \(4,\)'):
        sinkhorn(cost, b, b, epsilon=0.1)
    with pytest.raises(ValueError, match=r'`b` must have shape \(4,\).*got shape \(5,\)'):
        sinkhorn(cost, a, a, epsilon=0.1)
    with pytest.raises(ValueError, match=r'`cost` must have shape \(N, M\) or \(B, N, M\)'):
        sinkhorn(cost[0], epsilon=0.1)
    with pytest.raises(ValueError, match=r'`a` must have shape \(2, 5\)'):
        sinkhorn(cost.expand(2, 5, 4), a.expand(3, 5), epsilon=0.1)
    with pytest.raises(ValueError, match='epsilon'):
        sinkhorn(cost, epsilon=0.0)
    with pytest.raises(ValueError, match='rho'):
        sinkhorn(cost, epsilon=0.1, rho=-1.0)
    # the schedule's start is named as itself (the message said `epsilon`)
    with pytest.raises(ValueError, match='`epsilon_start` must be a finite positive number'):
        sinkhorn(cost, epsilon=0.1, epsilon_scaling=0.5, epsilon_start=-1.0)
    # 0 was silently taken as "off", and 1 as a schedule that never shrinks
    for factor in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match=re.escape(
                f'`epsilon_scaling` must be a factor in (0, 1), or None to run at `epsilon` '
                f'only; got {factor}.')):
            sinkhorn(cost, epsilon=0.1, epsilon_scaling=factor)
    # a start without a schedule, or below its end, was silently ignored
    with pytest.raises(ValueError, match='pass `epsilon_scaling` too'):
        sinkhorn(cost, epsilon=0.1, epsilon_start=10.0)
    with pytest.raises(ValueError, match=re.escape('`epsilon_start` (0.05) must be above '
                                                   '`epsilon` (0.1)')):
        sinkhorn(cost, epsilon=0.1, epsilon_scaling=0.5, epsilon_start=0.05)
    # a warm start that is no tensor: an AttributeError on .shape
    with pytest.raises(TypeError, match='`f_init` must be a tensor .* got list'):
        sinkhorn(cost, epsilon=0.1, f_init=[0.0] * 5)


def test_rho_from_numpy_and_torch_scalars():
    # np.float32 is no Python float: it was taken for a pair (TypeError: not iterable)
    import numpy as np
    cost, a, b = _problem(n=5, m=4)
    expected = sinkhorn(cost, a, b, epsilon=0.1, rho=0.5).plan
    for rho in (np.float32(0.5), np.float64(0.5), torch.tensor(0.5), (np.float32(0.5),) * 2):
        result = sinkhorn(cost, a, b, epsilon=0.1, rho=rho)
        assert result.rho == (0.5, 0.5)
        torch.testing.assert_close(result.plan, expected)


@pytest.mark.parametrize('rho', ['inf', None, (1.0, 'x'), ('1', 2.0), True])
def test_rho_that_is_no_number_names_the_option_and_the_fix(rho):
    # 'inf' said "could not convert string to float: 'i'" (the string was read as a
    # pair of characters) and None a TypeError; True was taken for rho = 1
    cost, _, _ = _problem(n=5, m=4)
    with pytest.raises(ValueError, match=re.escape(
            "`rho` must be a number or a pair (rho_a, rho_b) of numbers, float('inf') "
            f"for balanced OT; got {rho!r}.")):
        sinkhorn(cost, epsilon=0.1, rho=rho)


def test_batched_equals_looped():
    costs, a, b = [], [], []
    for seed in range(3):
        c, aa, bb = _problem(n=12, m=9, seed=seed)
        costs.append(c), a.append(aa), b.append(bb * 1.5)
    batched = sinkhorn(torch.stack(costs), torch.stack(a), torch.stack(b), epsilon=0.1, rho=0.5,
                       tol=1e-12, num_iters=20000)
    for i in range(3):
        single = sinkhorn(costs[i], a[i], b[i], epsilon=0.1, rho=0.5, tol=1e-12, num_iters=20000)
        torch.testing.assert_close(batched.plan[i], single.plan, atol=1e-12, rtol=0)
    assert batched.converged.shape == (3,)


def test_methods_and_accelerations_reach_the_same_solution():
    cost, a, b = _problem(seed=11, mass_b=2.0)
    ref = sinkhorn(cost, a, b, epsilon=0.05, rho=2.0, tol=1e-12, num_iters=50000, omega=1.0,
                   translation_invariant=False).plan
    variants = [dict(method='log'), dict(omega=1.5), dict(omega='auto'),
                dict(translation_invariant=True), dict(epsilon_scaling=0.5),
                dict(method='kernel', storage_dtype=F64)]
    for kw in variants:
        plan = sinkhorn(cost, a, b, epsilon=0.05, rho=2.0, tol=1e-12, num_iters=50000, **kw).plan
        torch.testing.assert_close(plan, ref, atol=1e-10, rtol=0, msg=str(kw))


def test_accelerations_cut_iterations():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(12), dtype=F64)
    cost = cosine_cost(x, x.flip(0))
    plain = sinkhorn(cost, epsilon=0.05, rho=10.0, tol=1e-8, num_iters=20000, omega=1.0,
                     translation_invariant=False)
    fast = sinkhorn(cost, epsilon=0.05, rho=10.0, tol=1e-8, num_iters=20000)
    assert fast.num_iters * 3 <= plain.num_iters


def test_non_convergence_warns_with_advice_and_tol_zero_never_warns():
    cost, a, b = _problem(seed=13)
    with pytest.warns(SinkhornConvergenceWarning, match='num_iters'):
        res = sinkhorn(cost, a, b, epsilon=0.01, num_iters=3, tol=1e-9)
    assert not bool(res.converged)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = sinkhorn(cost, a, b, epsilon=0.01, num_iters=3, tol=0)
    assert res.num_iters == 3


def test_converged_means_the_returned_potentials_meet_tol():
    # the loop's estimate mixes the row error before and the column error after a
    # half-step: it said converged (and no warning came) at marginal error 0.169 > 0.1
    gen = torch.Generator().manual_seed(35)
    cost = torch.rand(40, 60, dtype=torch.float64, generator=gen) * 2
    a = torch.rand(40, dtype=torch.float64, generator=gen) ** 3 + 0.01
    b = torch.rand(60, dtype=torch.float64, generator=gen) ** 3 + 0.01
    a, b = a / a.sum(), 0.7 * b / b.sum()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        res = sinkhorn(cost, a, b, epsilon=0.01, rho=(math.inf, 0.2), tol=0.1, omega=1.9,
                       check_every=5)
    assert bool(res.converged) and float(res.marginal_error) < 0.1


@pytest.mark.parametrize('solver', ['sinkhorn', 'sinkhorn_online', 'block_sparse_sinkhorn'])
def test_the_convergence_warning_points_at_the_callers_line(solver):
    # it pointed into the package (sinkhorn.py, online.py, block_sparse.py), so the
    # warning's location and `-W ignore::...:module` filters missed the user's code
    from mmseg_saot import ot
    x, y = torch.randn(30, 4, dtype=F64), torch.randn(20, 4, dtype=F64)
    inputs = (cosine_cost(x, y),) if solver == 'sinkhorn' else (x, y)
    with pytest.warns(SinkhornConvergenceWarning) as record:
        getattr(ot, solver)(*inputs, epsilon=0.01, num_iters=3, tol=1e-9)
    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize('rho', [math.inf, 1.0, (0.3, math.inf)])
def test_gradcheck_plan_objective_and_labels(rho):
    cost, a, b = _problem(n=5, m=4, seed=14)
    cost = cost.requires_grad_()
    labels = torch.randn(5, 3, generator=torch.Generator().manual_seed(15), dtype=F64)
    kw = dict(epsilon=0.2, rho=rho, tol=1e-14, num_iters=100000, warn=False)
    assert torch.autograd.gradcheck(lambda c: sinkhorn(c, a, b, **kw).plan, (cost,))
    assert torch.autograd.gradcheck(lambda c: sinkhorn(c, a, b, **kw).objective(), (cost,))
    assert torch.autograd.gradcheck(lambda c: sinkhorn(c, a, b, **kw).plan.t() @ labels, (cost,))


def test_gradcheck_batched_and_through_features():
    gen = torch.Generator().manual_seed(16)
    cost = torch.rand(2, 4, 3, generator=gen, dtype=F64).requires_grad_()
    kw = dict(epsilon=0.3, rho=1.0, tol=1e-14, num_iters=100000, warn=False)
    assert torch.autograd.gradcheck(lambda c: sinkhorn(c, **kw).plan, (cost,))
    x = torch.randn(5, 3, generator=gen, dtype=F64).requires_grad_()
    y = torch.randn(4, 3, generator=gen, dtype=F64)
    assert torch.autograd.gradcheck(lambda x: sinkhorn(cosine_cost(x, y), **kw).plan, (x,))


def test_envelope_gradient_of_objective_is_the_plan():
    cost, a, b = _problem(n=8, m=6, seed=17)
    cost = cost.requires_grad_()
    res = sinkhorn(cost, a, b, epsilon=0.1, rho=0.7, tol=1e-13, num_iters=50000)
    grad, = torch.autograd.grad(res.objective(), cost)
    torch.testing.assert_close(grad, res.plan.detach(), atol=1e-12, rtol=0)


@pytest.mark.parametrize('zero', ['a', 'b'])
def test_envelope_gradient_with_a_point_of_zero_weight(zero):
    # a point of zero weight receives no mass; its KL term 0 log(0/0) used to send NaN
    # into the gradient (the backward then reported a singular system)
    cost, a, b = _problem(n=8, m=6, seed=17)
    (a if zero == 'a' else b)[0] = 0.0
    cost = cost.requires_grad_()
    res = sinkhorn(cost, a, b, epsilon=0.1, rho=0.7, tol=1e-13, num_iters=50000)
    grad, = torch.autograd.grad(res.objective(), cost)
    torch.testing.assert_close(grad, res.plan.detach(), atol=1e-12, rtol=0)


def test_conjugate_gradient_backward_matches_dense_solve(monkeypatch):
    cost, a, b = _problem(n=20, m=15, seed=18)
    weights = torch.randn(20, 15, generator=torch.Generator().manual_seed(19), dtype=F64)
    grads = []
    for limit in (10**6, 0):
        monkeypatch.setattr(_implicit, 'DENSE_SCHUR_MAX', limit)
        for rho in (math.inf, 1.0):
            c = cost.clone().requires_grad_()
            plan = sinkhorn(c, a, b, epsilon=0.1, rho=rho, tol=1e-13, num_iters=50000).plan
            grads.append(torch.autograd.grad((plan * weights).sum(), c)[0])
    torch.testing.assert_close(grads[2], grads[0], atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(grads[3], grads[1], atol=1e-8, rtol=1e-6)


@pytest.mark.parametrize('rho', [math.inf, 1.0])
def test_float32_conjugate_gradient_backward_is_finite_and_accurate(monkeypatch, rho):
    # Balanced fp32 problems with both sides above DENSE_SCHUR_MAX gave a NaN gradient:
    # rounding left a component along the null vector 1 that CG amplified.
    monkeypatch.setattr(_implicit, 'DENSE_SCHUR_MAX', 0)
    features = ClusteredFeatures(32)
    x, x_labels = features.sample(300, 1)
    y, y_labels = features.sample(200, 2, domain_shift=0.3)
    grads = []
    for dtype, tol in ((torch.float32, 1e-6), (F64, 1e-11)):
        source = x.to(dtype).requires_grad_()
        result = sinkhorn(cosine_cost(source, y.to(dtype)), epsilon=0.05, rho=rho, tol=tol,
                          num_iters=20000)
        probs = transfer_labels(result, x_labels, 19).probs
        loss = torch.nn.functional.nll_loss(torch.log(probs + 1e-9), y_labels)
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # no 'did not reach rtol' warning either
            grads.append(torch.autograd.grad(loss, source)[0])
    assert bool(torch.isfinite(grads[0]).all())
    error = (grads[0].double() - grads[1]).norm() / grads[1].norm()
    assert float(error) < 1e-4


def test_result_dtype_follows_cost_and_potentials_are_accurate():
    x = torch.randn(400, 32, generator=torch.Generator().manual_seed(20))
    cost = cosine_cost(x[:250], x[250:])
    res = sinkhorn(cost, epsilon=0.05, rho=1.0, tol=1e-7)
    ref = sinkhorn(cost.double(), epsilon=0.05, rho=1.0, tol=1e-12, num_iters=5000)
    assert res.f.dtype == torch.float32 and res.plan.dtype == torch.float32
    assert float((res.plan.double() - ref.plan).abs().sum()) < 1e-5


def test_balanced_with_unequal_masses_raises_naming_both_sums():
    cost, a, b = _problem(n=5, m=4)
    with pytest.raises(ValueError, match=r'equal total masses, got a.sum\(\)=5 and '
                       r'b.sum\(\)=1'):
        sinkhorn(cost, 5 * a, b, epsilon=0.1)
    sinkhorn(cost, 5 * a, b, epsilon=0.1, rho=(math.inf, 1.0))  # semi-balanced is fine
    sinkhorn(cost, a * (1 + 1e-9), b, epsilon=0.1)  # within the relative tolerance


@pytest.mark.parametrize('dtype, size', [(torch.float16, 100), (torch.bfloat16, 100),
                                         (torch.float32, 100000)])
def test_weights_rounded_in_their_dtype_are_balanced_masses(dtype, size):
    # weights normalised in fp16/bf16 (or in fp32 over 1e5 points) miss 1 by more than
    # 1e-6: balanced OT refused them, naming two sums that printed as equal
    gen = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(size, generator=gen) * 3, 0).to(dtype)
    b = torch.full((70,), 1 / 70).to(dtype)
    cost = torch.rand(size, 70, generator=gen)
    res = sinkhorn(cost, a, b, epsilon=0.1, tol=1e-4)
    assert bool(res.converged)
    marginals = res.marginals()
    for sent in marginals:  # both sides carry a's total, to the solve's tolerance
        torch.testing.assert_close(sent.sum().double(), a.double().sum(), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match=r'a.sum\(\)=0.[45]\d+ and b.sum\(\)=\d.\d+ \(relative '
                       r'gap 0.5, beyond the [\d.e-]+ that rounding the weights allows\)'):
        sinkhorn(cost, a * 0.5, b, epsilon=0.1)


@pytest.mark.parametrize('size', [164000, 500000])
def test_uniform_fp16_weights_whose_entries_are_subnormal_are_balanced(size):
    # 1/n is subnormal in fp16 beyond n ~ 16k: the rounded weights sum to 0.997 (n 164k)
    # or 1.013 (n 500k), which a bound of 2 eps alone refused
    a = torch.full((size,), 1 / size).half()
    cost = torch.rand(size, 3, generator=torch.Generator().manual_seed(0))
    res = sinkhorn(cost, a, None, epsilon=0.1, num_iters=3, warn=False)
    assert bool(torch.isfinite(res.f).all())


@pytest.mark.parametrize('dtype, size, gap', [(torch.float16, 400, 0.03),
                                               (torch.float16, 10000, 0.1),
                                               (torch.bfloat16, 10000, 0.05)])
def test_low_precision_weights_of_unequal_masses_are_refused(dtype, size, gap):
    # the tolerance grew with sqrt(n) for every dtype: fp16 weights over 1e4 points
    # could differ by ~20 % and b was rescaled without a word
    a = torch.full((size,), 1 / size).to(dtype)
    b = torch.full((30,), (1 + gap) / 30).to(dtype)
    cost = torch.rand(size, 30, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match='needs equal total masses'):
        sinkhorn(cost, a, b, epsilon=0.1, num_iters=5)


@pytest.mark.parametrize('dense_limit', [10**6, 0], ids=['dense', 'conjugate_gradient'])
@pytest.mark.parametrize('zero', ['a', 'b'])
@pytest.mark.parametrize('rho', [math.inf, 0.7])
def test_gradient_with_zero_weight_points_equals_the_reduced_problem(
        monkeypatch, dense_limit, zero, rho):
    # Points of zero weight take no part in the problem: the gradient on the others is
    # that of the problem without them, and zero on theirs. Two of them on the smaller
    # side of a balanced problem used to make the Schur system singular (dense path) or
    # NaN (conjugate gradients).
    monkeypatch.setattr(_implicit, 'DENSE_SCHUR_MAX', dense_limit)
    n, m = (8, 6) if zero == 'b' else (6, 8)
    cost, a, b = _problem(n=n, m=m, seed=21)
    weights = torch.randn(n, m, generator=torch.Generator().manual_seed(22), dtype=F64)
    zeroed = a if zero == 'a' else b
    zeroed[:2] = 0.0
    zeroed /= zeroed.sum()
    keep = torch.arange(2, zeroed.numel())
    kw = dict(epsilon=0.1, rho=rho, tol=1e-13, num_iters=50000, warn=False)

    full = cost.clone().requires_grad_()
    plan = sinkhorn(full, a, b, **kw).plan
    grad, = torch.autograd.grad((plan * weights).sum(), full)

    reduced_cost = cost[keep] if zero == 'a' else cost[:, keep]
    reduced_weights = weights[keep] if zero == 'a' else weights[:, keep]
    reduced_a, reduced_b = (a[keep], b) if zero == 'a' else (a, b[keep])
    reduced = reduced_cost.clone().requires_grad_()
    plan = sinkhorn(reduced, reduced_a, reduced_b, **kw).plan
    expected, = torch.autograd.grad((plan * reduced_weights).sum(), reduced)

    assert torch.isfinite(grad).all()
    kept_grad = grad[keep] if zero == 'a' else grad[:, keep]
    dropped_grad = grad[:2] if zero == 'a' else grad[:, :2]
    torch.testing.assert_close(kept_grad, expected, atol=1e-8, rtol=1e-6)
    assert bool((dropped_grad == 0).all())


def test_slow_steady_convergence_is_not_taken_for_the_rounding_floor():
    # At small epsilon the fp32 error falls by ~0.2 % per window with jitter of the same
    # size; the stall check took that for the rounding floor and stopped at ~1200 of the
    # 3000 iterations asked for (error 7.7e-05, 90x the floor), advising a float64 cost.
    gen = torch.Generator().manual_seed(0)
    cost = cosine_cost(torch.randn(200, 8, generator=gen), torch.randn(200, 8, generator=gen))
    with pytest.warns(SinkhornConvergenceWarning, match='did not converge') as record:
        result = sinkhorn(cost, epsilon=0.005, num_iters=3000)
    assert result.num_iters == 3000 and float(result.marginal_error) < 3e-5
    # balanced: the translation-invariant step has nothing to do, so it is not advised
    assert 'translation_invariant' not in str(record[0].message)


def test_half_precision_storage_is_not_stopped_above_its_floor():
    # bf16 storage of a float64 cost stopped at 1.0e-07 after 90 iterations, "at the
    # rounding floor", advising a float64 cost (it was one); it converges to 1e-9
    gen = torch.Generator().manual_seed(0)
    cost = cosine_cost(torch.randn(300, 16, generator=gen),
                       torch.randn(250, 16, generator=gen)).double()
    with warnings.catch_warnings():
        warnings.simplefilter('error', SinkhornConvergenceWarning)
        result = sinkhorn(cost, epsilon=0.05, rho=1.0, tol=1e-9, storage_dtype=torch.bfloat16)
    assert bool(result.converged)


@pytest.mark.parametrize('storage, solver, advice', [
    (torch.bfloat16, 'sinkhorn', '`storage_dtype=torch.float32`'),
    (torch.float32, 'sinkhorn', 'pass a float64 cost'),
    (torch.float32, 'block_sparse_sinkhorn', 'pass float64 inputs')])
def test_a_stop_at_the_floor_advises_by_storage_and_solver(storage, solver, advice):
    stall = _stall.Stall(patience=5)
    # flat within 10x of the floor, though the last error is above it: the floor rule
    # (the advice used to follow the last error and spoke of slow convergence)
    for err in [1.15e-5] * 5 + [1e-5, 1e-5, 1e-5, 1.05e-5, 1.2e-5]:
        stall.update(err, 1.1e-6)
    assert stall.stalled and stall.reason == 'floor'
    cfg = _loop.LoopConfig(epsilon=0.05, rho_a=1.0, rho_b=1.0, num_iters=100, tol=1e-9,
                           check_every=10, omega=1.0, translation_invariant=True,
                           solver_name=solver)
    operator = type('Operator', (), {'storage_dtype': storage})()
    message = _stall.stall_advice(stall, operator, cfg)
    assert 'rounding floor' in message and advice in message


def test_a_cpu_solve_runs_on_one_torch_thread_and_rebuilds_on_the_callers(monkeypatch):
    # a parallel torch op right after numpy's BLAS waited 1-5 ms for OpenBLAS's
    # spinning threads; the rebuilds keep the caller's threads (for_row_chunks)
    module = importlib.import_module('mmseg_saot.ot.sinkhorn')
    operators = importlib.import_module('mmseg_saot.ot._operators')
    seen = {'rebuild_workers': []}
    check_cost, for_row_chunks = module.check_cost, operators.for_row_chunks

    def checking(cost):
        seen['threads'] = torch.get_num_threads()
        return check_cost(cost)

    def chunks(fn, num_rows, chunk, workers=1):
        seen['rebuild_workers'].append(workers)
        return for_row_chunks(fn, num_rows, chunk, workers)

    monkeypatch.setattr(module, 'check_cost', checking)
    monkeypatch.setattr(operators, 'for_row_chunks', chunks)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sinkhorn(torch.rand(20, 10), epsilon=0.1, num_iters=5, tol=0.0)
        assert seen['threads'] == 1 and seen['rebuild_workers'][0] == 2
        assert torch.get_num_threads() == 2
        with pytest.raises(ValueError, match='epsilon'):
            sinkhorn(torch.rand(20, 10), epsilon=-1.0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_kernel_solve_that_underflows_says_which_method_rescues_it():
    # method='kernel' has no log-domain rescue; its error only said "check the cost
    # scale against epsilon", not that method='auto' or 'log' solves the same problem
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(50, 40, generator=gen) * 2
    cost[:, 0] += 200.0  # a far-off column: its kernel underflows
    with pytest.raises(FloatingPointError, match=r"non-finite potentials \(kernel softmin\); "
                       r"check the cost scale against epsilon=0.01 or solve with "
                       r"method='auto' \(kernel iterations with a log-domain rescue\) or "
                       r"'log'\."):
        sinkhorn(cost, epsilon=0.01, method='kernel', num_iters=50)
    assert bool(torch.isfinite(sinkhorn(cost, epsilon=0.01, method='auto', num_iters=50).f)
                .all())
