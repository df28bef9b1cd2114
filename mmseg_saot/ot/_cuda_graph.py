"""Replay the unmeasured iterations of a check window as one CUDA graph.

On a GPU an iteration is two memory-bound kernel products plus some 50 small
vector operations (softmin shifts, the relaxed updates, the translation step).
Launched one by one from Python those cost ~10 us each, more than the products
themselves below N = M = 16k: measured on an H200, 0.8 ms per iteration at
N = 1024 where reading the matrix takes 0.02 ms. A captured graph launches
them all at once. The graph runs exactly the eager code (same kernels, same
order), so results are bitwise those of the eager loop with ``omega`` passed as
a tensor.

A graph is captured per (operator and its kernel/reference tensors, epsilon,
taus, translation switch, count); the kernel operator absorbs in place, so only a
new epsilon stage or a new operator (the log-domain fallback) makes a new capture.
Omega is an input tensor, so the auto-relaxation schedule does not. Operators with
``graph_safe = False`` (the block-sparse ones, which index on the host) and a
failed capture fall back to eager iterations.
"""
import functools
import warnings
from typing import Dict, Optional

import torch

# Off by default: measured on an H200 (benchmarks/ot_cuda.md, 100-iteration solves)
# graphs saved 20-40 % at N = M <= 4096 but cost 10-20 % at 16k-32k, where the two
# captures per solve (plain, then relaxed steps) and the eager window ends outweigh
# the launches saved. The fused iteration (_fused_step.py), on by default, takes
# precedence: graphs replay eager iterations only where it is off or unusable.
ENABLED = {'cuda_graphs': False}


def plain_iterations(op, state: Dict[str, torch.Tensor], count: int, tau_a: float,
                     tau_b: float, use_ti: bool, relaxed: bool,
                     translation) -> Dict[str, torch.Tensor]:
    """``count`` iterations without measurement, as in ``_loop._run``.

    ``state`` holds ``f``, ``g``, ``omega`` (0-dim tensor, used if ``relaxed``) and,
    with the translation step, its cached log-sums ``A`` and ``B``. Returns the new
    ``f``, ``g`` (, ``A``, ``B``).
    """
    f, g, omega = state['f'], state['g'], state['omega']
    if use_ti:
        translation.A, translation.B = state['A'], state['B']

    def f_update(f_old, smin):
        return torch.lerp(f_old, tau_a * smin, omega) if relaxed else tau_a * smin

    for _ in range(count):
        f, t, _ = op.step(f, g, f_update, None)
        if use_ti:
            f, g, lam = translation.after_f(f, g)
            t = t - lam
        g = torch.lerp(g, tau_b * t, omega) if relaxed else tau_b * t
        if use_ti:
            f, g, _ = translation.after_g(f, g)
    out = {'f': f, 'g': g}
    if use_ti:
        out.update(A=translation.A, B=translation.B)
    return out


class _Same:
    """Key entry equal only to the very same object."""

    __slots__ = ('obj',)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


class WindowGraph:
    """Captures and replays ``plain_iterations`` for the current operator state."""

    def __init__(self):
        self.key = None
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.static: Dict[str, torch.Tensor] = {}
        self.out: Dict[str, torch.Tensor] = {}
        self.failed = False

    @staticmethod
    def usable(f: torch.Tensor) -> bool:
        return ENABLED['cuda_graphs'] and f.is_cuda

    def run(self, op, f, g, omega: float, count: int, tau_a: float, tau_b: float,
            use_ti: bool, translation):
        """Return ``(f, g)`` after ``count`` iterations, or None (then iterate eagerly)."""
        if (self.failed or not getattr(op, 'graph_safe', True)
                or (use_ti and (translation.A is None or translation.B is None))):
            return None
        state = {'f': f, 'g': g, 'omega': torch.full((), omega, dtype=f.dtype,
                                                      device=f.device)}
        if use_ti:
            state.update(A=translation.A, B=translation.B)
        relaxed = omega != 1.0
        # Tensors the graph reads from the operator, compared by identity (the key keeps
        # them alive, so an identity cannot be reused); the operator updates them in
        # place on absorption, so only a new epsilon or a new operator recaptures.
        key = (_Same(op), _Same(getattr(op, 'kernel', None)), _Same(getattr(op, 'f_hat', None)),
               _Same(getattr(op, 'g_hat', None)), getattr(op, 'epsilon', None), count, tau_a,
               tau_b, use_ti, relaxed, tuple(f.shape), tuple(g.shape))
        run_iters = functools.partial(plain_iterations, op, count=count, tau_a=tau_a,
                                      tau_b=tau_b, use_ti=use_ti, relaxed=relaxed,
                                      translation=translation)
        result = self._execute(key, state, run_iters)
        if result is None:
            if use_ti:
                translation.A, translation.B = state['A'], state['B']
            return None
        if use_ti:
            translation.A, translation.B = result['A'], result['B']
        return result['f'], result['g']

    def _execute(self, key, state, run_iters) -> Optional[Dict[str, torch.Tensor]]:
        """Replay the graph of ``key`` (capturing it first if new) on ``state``."""
        if key != self.key:
            try:
                self._capture(state, run_iters)
            except Exception as error:  # any capture problem: eager from now on
                self.failed = True
                warnings.warn(f'CUDA graph capture failed ({type(error).__name__}: {error}); '
                              'running Sinkhorn iterations eagerly.', RuntimeWarning)
                return None
            self.key = key
        with torch.no_grad():
            for name, value in state.items():
                self.static[name].copy_(value)
            self.graph.replay()
            return {name: value.clone() for name, value in self.out.items()}

    def _capture(self, state, run_iters) -> None:
        self.graph, self.key = None, None
        with torch.no_grad():
            self.static = {name: value.clone() for name, value in state.items()}
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up: lazy inits happen outside the capture
                run_iters({name: value.clone() for name, value in state.items()}, count=1)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.out = run_iters(self.static)
        self.graph = graph
