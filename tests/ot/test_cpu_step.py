"""The one-pass CPU iteration (_cpu_step.py) against two separate products."""
import math
import warnings

import pytest
import torch

from mmseg_saot.ot import _cpu_step
from mmseg_saot.ot._acceleration import RelaxedUpdate
from mmseg_saot.ot._loop import row_violation
from mmseg_saot.ot._operators import KernelOperator, Operator
from mmseg_saot.ot.costs import DenseCost


def _problem(storage, batch=2, rows=37, cols=23, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cost = torch.rand(batch, rows, cols, generator=gen) * 2
    log_a = torch.log(torch.rand(batch, rows, generator=gen, dtype=torch.float64) + 0.1)
    log_b = torch.log(torch.rand(batch, cols, generator=gen, dtype=torch.float64) + 0.1)
    log_a[0, :12] = -math.inf  # a first row block of zero weight in problem 0
    log_b[1, 3] = -math.inf    # and a column of zero weight in problem 1
    op = KernelOperator(DenseCost(cost), log_a, log_b, 0.1, storage)
    f = torch.randn(batch, rows, generator=gen, dtype=torch.float64) * 0.2
    g = torch.randn(batch, cols, generator=gen, dtype=torch.float64) * 0.2
    op.set_epsilon(0.1, torch.zeros_like(f), torch.zeros_like(g))
    op.fused_rows = 12  # four row blocks, the last one short
    return op, f, g


@pytest.mark.parametrize('storage', [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize('update', [RelaxedUpdate(0.9), RelaxedUpdate(0.9, 1.6),
                                    lambda f_old, smin: 0.5 * (f_old + smin)])
def test_one_pass_equals_two_products(storage, update):
    op, f, g = _problem(storage)
    violation = lambda f_old, smin, log_a: row_violation(f_old, smin, log_a, eps=0.1, rho=1.0)  # noqa: E731
    fused = _cpu_step.fused_step(op, f, g, update, violation)
    plain = Operator.step(op, f, g, update, violation)
    tol = 1e-12 if storage == torch.float64 else 1e-6
    for got, want in zip(fused, plain):
        torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    assert torch.isfinite(fused[0]).all() and torch.isfinite(fused[1]).all()


def test_relaxed_update_into_equals_the_torch_update():
    gen = torch.Generator().manual_seed(1)
    f_old = torch.randn(50, generator=gen, dtype=torch.float64)
    smin = torch.randn(50, generator=gen, dtype=torch.float64)
    for update in (RelaxedUpdate(0.95), RelaxedUpdate(0.95, 1.7)):
        out = torch.empty(50, dtype=torch.float64)
        update.into(f_old.numpy(), smin.clone().numpy(), out.numpy())
        torch.testing.assert_close(out, update(f_old, smin), rtol=1e-15, atol=1e-15)


def test_a_row_whose_kernel_underflowed_gives_a_non_finite_potential_without_warnings():
    op, f, g = _problem(torch.float32)
    op.kernel[1, 20] = 0.0  # the loop must see it and rescue in the log domain
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # numpy's divide-by-zero warning would be one
        f_new, _, _ = _cpu_step.fused_step(op, f, g, RelaxedUpdate(1.0), None)
    assert not math.isfinite(float(f_new[1, 20]))
    assert torch.isfinite(torch.cat([f_new[1, :20], f_new[1, 21:]])).all()
