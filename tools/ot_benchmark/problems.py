"""The benchmark's problems, and one solve by each method: ours, POT, geomloss."""
import importlib
import math
import os
import sys
import types
import warnings

import torch

# the repository: tools/ot_benchmark/problems.py is three levels below it
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def import_ot():
    """Import ``mmseg_saot.ot`` alone: it is pure torch, and skipping the package
    ``__init__`` (which imports mmseg) saves seconds in every worker subprocess."""
    if 'mmseg_saot' not in sys.modules:
        pkg = types.ModuleType('mmseg_saot')
        pkg.__path__ = [os.path.join(ROOT, 'mmseg_saot')]
        sys.modules['mmseg_saot'] = pkg
    return importlib.import_module('mmseg_saot.ot')


def make_problem(size, dim, device, seed=0):
    ot_mod = import_ot()
    from mmseg_saot.ot.synthetic import ClusteredFeatures
    geometry = ClusteredFeatures(dim, seed=seed)
    x, _ = geometry.sample(size, seed=seed + 1, concentration=20.0)
    y, _ = geometry.sample(size, seed=seed + 2, domain_shift=0.3, concentration=20.0)
    x, y = x.to(device), y.to(device)
    # Row blocks into a preallocated matrix: no N x M temporaries, so that the resident
    # set after setup is the inputs, and a solve's peak is measured from there.
    cost = torch.empty(size, size, device=device)
    for i0 in range(0, size, 64):
        cost[i0:i0 + 64] = ot_mod.cosine_cost(x[i0:i0 + 64], y)
    a = torch.full((size,), 1.0 / size, device=device)
    return x, y, cost, a, a.clone()


def marginal_error(plan, f, g, a, b, rho):
    """Relative L1 violation of P1 = a e^{-f/rho}, P^T 1 = b e^{-g/rho}, in fp64."""
    plan, f, g, a, b = (t.double() for t in (plan, f, g, a, b))
    rows, cols = plan.sum(1), plan.sum(0)
    ta = a if math.isinf(rho) else a * torch.exp(-f / rho)
    tb = b if math.isinf(rho) else b * torch.exp(-g / rho)
    return float((rows - ta).abs().sum() / a.sum() + (cols - tb).abs().sum() / b.sum())


class PotentialPlan:
    """A plan given by potentials, built only when ``.plan`` is read (as ours is): the
    N x M exponential is not part of a peer's timed solve."""

    def __init__(self, f, g, cost, a, b, eps):
        self.f, self.g, self._inputs = f, g, (cost, a, b, eps)

    @property
    def plan(self):
        cost, a, b, eps = self._inputs
        return torch.exp(torch.log(a)[:, None] + torch.log(b)[None, :] +
                         (self.f[:, None] + self.g[None, :] - cost) / eps)


def run_method(method, x, y, cost, a, b, eps, rho, iters, tol=0.0, scaling=0.5,
               potentials=True):
    """Solve once; return ``(plan, f, g)`` (plan and potentials on the problem's device;
    the plan may be an object whose ``.plan`` builds it, see :func:`plan_of`).

    ``potentials=False``: what a timed run needs, no more. POT is then called with
    ``log=False``: with ``log=True`` it also evaluates its objective at the end (the
    cost and three KL terms over N x M: one more matrix of memory and ~8 % of its time
    at 4096), which ours never does; f and g are then None. Time and memory are
    measured this way, the marginal error on a separate untimed run with the
    potentials.
    """
    if method.startswith('ours'):
        ot_mod = import_ot()
        from mmseg_saot.ot import _cuda_graph, _fused_step, _matvec
        # GPU rows: 'ours', 'ours-fp16', 'ours-bf16' run the fused Triton iteration
        # (the default, _fused_step.py); '-unfused': the eager iteration (two products
        # and ~50 vector launches); '-cublas': cuBLAS products (fp32: still fused vector
        # kernels; fp16: eager); '-graphs': eager iterations replayed as CUDA graphs.
        name = (method.replace('-cublas', '').replace('-graphs', '')
                .replace('-unfused', ''))
        _cuda_graph.ENABLED['cuda_graphs'] = '-graphs' in method
        _fused_step.ENABLED['fused'] = not ('-unfused' in method or '-graphs' in method)
        _fused_step.FP32_PRODUCTS['name'] = 'cublas' if '-cublas' in method else 'triton'
        storage = {'ours': None, 'ours-fp16': torch.float16, 'ours-bf16': torch.bfloat16,
                   'ours-fp64': None}[name]
        c = cost.double() if method == 'ours-fp64' else cost
        _matvec.HALF_CUDA_BACKEND['name'] = 'cublas' if '-cublas' in method else 'triton'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            res = ot_mod.sinkhorn(c, a.to(c.dtype), b.to(c.dtype), epsilon=eps, rho=rho,
                                  num_iters=iters, tol=tol, storage_dtype=storage)
        return res, res.f, res.g
    if method.startswith('pot'):
        import numpy as np
        import ot
        solver = 'sinkhorn_stabilized' if method.endswith('stab') else 'sinkhorn'
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if 'numpy' in method:
                out = ot.unbalanced.sinkhorn_unbalanced(
                    a.cpu().numpy(), b.cpu().numpy(), cost.cpu().numpy(), eps, rho,
                    method=solver, reg_type='kl', numItermax=iters, stopThr=tol,
                    log=potentials)
                if not potentials:
                    return torch.from_numpy(np.asarray(out)), None, None
                plan, log = out
                to_t = torch.from_numpy
                return to_t(np.asarray(plan)), eps * to_t(log['logu']), eps * to_t(log['logv'])
            out = ot.unbalanced.sinkhorn_unbalanced(a, b, cost, eps, rho, method=solver,
                                                    reg_type='kl', numItermax=iters,
                                                    stopThr=tol, log=potentials)
            if not potentials:
                return out, None, None
            plan, log = out
            return plan, eps * log['logu'], eps * log['logv']
    if method == 'geomloss':
        from geomloss import SamplesLoss
        loss = SamplesLoss('sinkhorn', p=2, blur=math.sqrt(eps),
                           reach=None if math.isinf(rho) else math.sqrt(rho), debias=False,
                           potentials=True, scaling=scaling, backend='tensorized')
        f, g = loss(x, y)
        f, g = f.reshape(-1), g.reshape(-1)
        return PotentialPlan(f, g, cost, a, b, eps), f, g
    raise ValueError(method)


def plan_of(solution):
    plan = solution[0]
    return plan.plan if hasattr(plan, 'plan') else plan
