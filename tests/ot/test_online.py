"""The online (matrix-free) solver solves the dense problem without holding N x M."""
import math
import re

import pytest
import torch
import torch.nn.functional as F

from mmseg_saot.ot import cosine_cost, sinkhorn, sinkhorn_online, sqeuclidean_cost
from mmseg_saot.ot.costs import FeatureCost

F64 = torch.float64


def _features(n=70, m=45, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=F64), torch.randn(m, d, generator=gen,
                                                                      dtype=F64))


@pytest.mark.parametrize('rho', [math.inf, 1.0, (0.5, 2.0)])
@pytest.mark.parametrize('chunk', [1, 16, 1000])
def test_online_equals_dense_cosine(rho, chunk):
    x, y = _features()
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(70, generator=gen, dtype=F64) + 0.2
    b = torch.rand(45, generator=gen, dtype=F64) + 0.2
    a, b = a / a.sum(), b / b.sum()
    dense = sinkhorn(cosine_cost(x, y), a, b, epsilon=0.05, rho=rho, tol=1e-12, num_iters=20000)
    online = sinkhorn_online(x, y, a, b, epsilon=0.05, rho=rho, tol=1e-12, num_iters=20000,
                             chunk_size=chunk)
    torch.testing.assert_close(online.plan, dense.plan, atol=1e-12, rtol=0)
    assert online.method == 'online'


def test_online_metrics_and_projection():
    x, y = _features(seed=2)
    proj = torch.randn(8, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    cases = [
        ('sqeuclidean', None, sqeuclidean_cost(x, y)),
        (lambda u, v: torch.cdist(u, v), None, torch.cdist(x, y)),
        ('cosine', proj, cosine_cost(x @ proj, y @ proj)),
    ]
    for metric, projection, cost in cases:
        dense = sinkhorn(cost, epsilon=0.1, rho=1.0, tol=1e-12, num_iters=20000)
        online = sinkhorn_online(x, y, epsilon=0.1, rho=1.0, cost=metric, projection=projection,
                                 tol=1e-12, num_iters=20000, chunk_size=9)
        torch.testing.assert_close(online.plan, dense.plan, atol=1e-12, rtol=0)


def test_online_never_builds_more_than_a_chunk(monkeypatch):
    x, y = _features(n=200, m=30, seed=4)
    shapes = []
    original = FeatureCost.block

    def spy(self, i0, i1, j0=0, j1=None):
        out = original(self, i0, i1, j0, j1)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(FeatureCost, 'block', spy)
    sinkhorn_online(x, y, epsilon=0.1, rho=1.0, chunk_size=25, tol=1e-8)
    assert shapes and max(s[0] for s in shapes) <= 25


def test_online_float32_features_accuracy():
    gen = torch.Generator().manual_seed(5)
    x = F.normalize(torch.randn(300, 16, generator=gen), dim=1)
    y = F.normalize(torch.randn(200, 16, generator=gen), dim=1)
    ref = sinkhorn(cosine_cost(x.double(), y.double()), epsilon=0.05, rho=1.0, tol=1e-12,
                   num_iters=5000)
    online = sinkhorn_online(x, y, epsilon=0.05, rho=1.0, tol=1e-8, chunk_size=64)
    assert online.plan.dtype == torch.float32
    assert float((online.plan.double() - ref.plan).abs().sum()) < 1e-5


def test_online_input_errors():
    x, y = _features()
    with pytest.raises(ValueError, match='feature dimension'):
        sinkhorn_online(x, y[:, :3], epsilon=0.1)
    bad = x.clone()
    bad[0, 0] = float('nan')
    with pytest.raises(ValueError, match='`x` contains NaN'):
        sinkhorn_online(bad, y, epsilon=0.1)
    with pytest.raises(ValueError, match="'cosine', 'sqeuclidean' or a callable"):
        sinkhorn_online(x, y, epsilon=0.1, cost='manhattan')
    for chunk in (0, -3):  # ran without a word
        with pytest.raises(ValueError, match=f'`chunk_size` must be an integer >= 1, got {chunk}'):
            sinkhorn_online(x, y, epsilon=0.1, chunk_size=chunk)


def test_online_warm_start_is_checked_and_used_as_in_sinkhorn():
    # a warm start of another shape was reshaped silently (or failed deep in torch), and
    # a NaN one ran to a NaN plan; now both are named, as sinkhorn() names them
    x, y = _features()
    with pytest.raises(ValueError, match=r'`f_init` must have shape \(70,\), got \(35, 2\)'):
        sinkhorn_online(x, y, epsilon=0.1, f_init=torch.zeros(35, 2, dtype=F64))
    with pytest.raises(ValueError, match='`g_init` contains NaN'):
        sinkhorn_online(x, y, epsilon=0.1, g_init=torch.full((45,), float('nan'), dtype=F64))
    dense = sinkhorn(cosine_cost(x, y), epsilon=0.1, rho=1.0, tol=1e-12, num_iters=10000)
    warm = sinkhorn_online(x, y, epsilon=0.1, rho=1.0, tol=1e-12, num_iters=10000,
                           f_init=dense.f, g_init=dense.g)
    assert warm.num_iters <= 10
    torch.testing.assert_close(warm.plan, dense.plan, atol=1e-10, rtol=0)


def test_online_features_of_two_dtypes_solve_in_the_wider():
    # the solve took x's dtype, so (float32, float64) lost y's precision; block-sparse and
    # nn_transfer promote to the wider of the two
    x, y = _features()
    for pair in ((x.float(), y), (x, y.float())):
        mixed = sinkhorn_online(*pair, epsilon=0.1, rho=1.0, tol=1e-12, num_iters=10000)
        assert mixed.f.dtype == torch.float64
        expected = sinkhorn_online(pair[0].double(), pair[1].double(), epsilon=0.1, rho=1.0,
                                   tol=1e-12, num_iters=10000)
        torch.testing.assert_close(mixed.plan, expected.plan, atol=1e-12, rtol=0)


@pytest.mark.parametrize('bad', [float('nan'), -float('inf')])
@pytest.mark.parametrize('where', ['cost', 'projection'])
def test_a_callable_that_returns_non_finite_values_is_named(bad, where):
    # the solve failed with "non-finite potentials; check the cost scale against
    # epsilon", which sent the user to tune epsilon for a broken callable
    x, y = _features()

    def metric(xb, yb):
        out = sqeuclidean_cost(xb, yb)
        out[0, 0] = bad
        return out

    def projection(feats):
        feats = feats.clone()
        feats[5, 0] = bad
        return feats

    kw = dict(cost=metric) if where == 'cost' else dict(projection=projection)
    culprit = ('\\(row 0, col 0\\): NaN or -inf from `cost`' if where == 'cost' else
               'NaN or -inf from the `projection` callable')
    with pytest.raises(ValueError, match=f'the cost is not finite .*{culprit}'):
        sinkhorn_online(x, y, epsilon=0.1, **kw)


def test_a_trainable_projection_module_is_told_it_gets_no_gradient():
    # only tensors were checked: an nn.Linear's weights were dropped without a word
    x, y = _features()
    projection = torch.nn.Linear(x.shape[1], 3).double()
    with pytest.warns(UserWarning, match='sinkhorn_online does not propagate gradients'):
        sinkhorn_online(x, y, epsilon=0.1, rho=1.0, projection=projection)


@pytest.mark.parametrize('kind', ['row', 'column'])
def test_a_point_whose_costs_are_all_forbidden_is_named(kind):
    # +inf forbids a pair; a row or column of +inf alone gave "non-finite potentials;
    # check the cost scale against epsilon"
    x, y = _features()

    def metric(xb, yb):
        out = sqeuclidean_cost(xb, yb)
        if kind == 'row':
            out[(xb == x[3]).all(1)] = float('inf')
        else:
            out[:, (yb == y[2]).all(1)] = float('inf')
        return out

    point = 'x[3]' if kind == 'row' else 'y[2]'
    with pytest.raises(ValueError, match=re.escape(
            f'sinkhorn_online: {kind} {3 if kind == "row" else 2} of the cost is +inf '
            f'everywhere: {point} may go nowhere')):
        sinkhorn_online(x, y, epsilon=0.1, rho=1.0, cost=metric)

    def scattered(xb, yb):  # single forbidden pairs stay allowed
        out = sqeuclidean_cost(xb, yb)
        out[0, 0] = float('inf')
        return out

    assert bool(sinkhorn_online(x, y, epsilon=0.1, rho=1.0, cost=scattered).converged)


def test_epsilon_scaling_starts_from_the_finite_costs():
    # a forbidden pair (+inf) in the first rows made the schedule start at epsilon=inf:
    # "non-finite potentials ... check the cost scale against epsilon=inf"
    x, y = _features()

    def forbidding(xb, yb):
        out = sqeuclidean_cost(xb, yb)
        out[0, 0] = float('inf')
        return out

    plain = sinkhorn_online(x, y, epsilon=0.1, rho=1.0, cost=forbidding, tol=1e-8)
    scaled = sinkhorn_online(x, y, epsilon=0.1, rho=1.0, cost=forbidding, tol=1e-8,
                             epsilon_scaling=0.5)
    assert bool(scaled.converged)
    torch.testing.assert_close(scaled.f, plain.f, rtol=0, atol=1e-5)
