"""The windowed iteration path used for CUDA graphs, checked on CPU.

On a GPU ``_loop`` replays the unmeasured iterations of each check window through
``_cuda_graph.WindowGraph`` (test_cuda.py covers the real graphs). Here the graph
is replaced by a direct call of the same ``plain_iterations``, so the hand-over of
the potentials, the translation cache and the iteration count is checked anywhere.
"""
import math

import pytest
import torch

from mmseg_saot.ot import _cpu_step, _cuda_graph, _loop, cosine_cost, sinkhorn


class EagerWindow(_cuda_graph.WindowGraph):
    calls = 0

    def _execute(self, key, state, run_iters):
        EagerWindow.calls += 1
        return run_iters(state)


@pytest.fixture
def eager_windows(monkeypatch):
    EagerWindow.calls = 0
    monkeypatch.setitem(_cpu_step.ENABLED, 'one_pass', False)  # windows replace eager steps
    monkeypatch.setattr(_loop._cuda_graph, 'WindowGraph', EagerWindow)
    monkeypatch.setattr(EagerWindow, 'usable', staticmethod(lambda f: True))


def _cost():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(60, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(45, 8, generator=gen, dtype=torch.float64)
    return cosine_cost(x, y)


@pytest.mark.parametrize('rho,omega', [(math.inf, 'auto'), (1.0, 'auto'), (1.0, 1.0),
                                       ((0.5, 2.0), 1.5)])
def test_windowed_iterations_equal_the_eager_loop(rho, omega, eager_windows, monkeypatch):
    cost = _cost()
    kw = dict(epsilon=0.05, rho=rho, omega=omega, tol=1e-10, num_iters=3000)
    windowed = sinkhorn(cost, **kw)
    assert EagerWindow.calls > 0
    monkeypatch.setattr(EagerWindow, 'usable', staticmethod(lambda f: False))
    eager = sinkhorn(cost, **kw)
    assert windowed.num_iters == eager.num_iters
    torch.testing.assert_close(windowed.f, eager.f, atol=1e-12, rtol=0)
    torch.testing.assert_close(windowed.g, eager.g, atol=1e-12, rtol=0)


def test_epsilon_scaling_stages_shorter_than_a_window(eager_windows, monkeypatch):
    cost = _cost()
    kw = dict(epsilon=0.01, rho=1.0, epsilon_scaling=0.5, tol=1e-9, num_iters=2000)
    windowed = sinkhorn(cost, **kw)
    monkeypatch.setattr(EagerWindow, 'usable', staticmethod(lambda f: False))
    eager = sinkhorn(cost, **kw)
    assert windowed.num_iters == eager.num_iters
    torch.testing.assert_close(windowed.plan, eager.plan, atol=1e-12, rtol=0)
