"""Benchmark mmseg_saot.ot against POT and geomloss on the same unbalanced OT problems.

Every row solves ``min <P,C> + eps KL(P|ab^T) + rho KL(P1|a) + rho KL(P^T1|b)`` between
two sets of N = M unit feature vectors (clustered synthetic features, 19 classes),
with C = 1 - cos, eps 0.05 and rho 1 by default:

* ours: ``mmseg_saot.ot.sinkhorn`` from the stored cost (fp32; on GPU also fp16/bf16
  kernel storage), ``--iters`` iterations, no early stop (``tol=0``); on GPU the fused
  Triton iteration, with ``-unfused`` (eager iteration), ``-cublas`` (cuBLAS products)
  and ``-graphs`` (eager iterations as CUDA graphs) rows for comparison;
* POT 0.9.5 ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=eps, reg_m=rho,
  reg_type='kl')``, methods 'sinkhorn' and 'sinkhorn_stabilized', torch backend, and on
  CPU the numpy backend (fp32 arrays, the same problem), ``--iters`` iterations;
* geomloss ``SamplesLoss('sinkhorn', p=2, blur=sqrt(eps), reach=sqrt(rho),
  debias=False, backend='tensorized')`` from the features: on unit vectors its cost
  ``|x - y|^2 / 2`` is ``1 - cos``, ``blur^p = eps``, ``reach^p = rho``. It anneals epsilon
  with its own number of iterations, so compare its time per problem solved and the
  marginal error it reached;
* on GPU, the memory floor: the time to read the N x M matrix twice per iteration.

Times are medians over ``--repeats`` runs (the cost matrix is given; its computation is
not timed, except for geomloss which starts from features). Peak memory is the extra
memory a solve needs beyond its inputs: on CPU the growth of the resident set
(sampled every millisecond) of a fresh subprocess per case, on GPU
``torch.cuda.max_memory_allocated``.
The marginal error is the relative L1 violation of the optimality conditions
``P1 = a exp(-f/rho)``, ``P^T1 = b exp(-g/rho)``, computed in fp64 for every method from
its plan and potentials.

Further sections: iterations to tolerance (``--iters-table``), time to a common
accuracy (marginal error 1e-6 against an fp64 reference), and block-sparse against
dense at SAOT's working point (one 37 x 74-patch target against 8 sources, d 1024),
with a peak-memory estimate for a full-resolution 73 x 146 target.

Usage::

    python tools/benchmark_ot.py                      # CPU defaults, < 10 min on 2 cores
    python tools/benchmark_ot.py --device cuda        # adds 16k, 32k and the GPU rows
    python tools/benchmark_ot.py --sizes 1024,4096,8192 --dims 384 --repeats 5
    # block-sparse on real frozen ViT-S/14 features of street scenes (offline weights)
    python tools/benchmark_ot.py --sections block --block-data streets --block-seeds 0,1,2
"""
import argparse
import dataclasses
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ('speed', 'iters', 'accuracy', 'block', 'fullres')


def import_ot():
    """Import ``mmseg_saot.ot`` alone: it is pure torch, and skipping the package
    ``__init__`` (which imports mmseg) saves seconds in every worker subprocess."""
    if 'mmseg_saot' not in sys.modules:
        pkg = types.ModuleType('mmseg_saot')
        pkg.__path__ = [os.path.join(ROOT, 'mmseg_saot')]
        sys.modules['mmseg_saot'] = pkg
    return importlib.import_module('mmseg_saot.ot')


# ----------------------------------------------------------------------------- problems


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


def run_method(method, x, y, cost, a, b, eps, rho, iters, tol=0.0, scaling=0.5):
    """Solve once; return ``(plan, f, g)`` (plan and potentials on the problem's device)."""
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
                plan, log = ot.unbalanced.sinkhorn_unbalanced(
                    a.cpu().numpy(), b.cpu().numpy(), cost.cpu().numpy(), eps, rho,
                    method=solver, reg_type='kl', numItermax=iters, stopThr=tol, log=True)
                to_t = torch.from_numpy
                return to_t(np.asarray(plan)), eps * to_t(log['logu']), eps * to_t(log['logv'])
            plan, log = ot.unbalanced.sinkhorn_unbalanced(a, b, cost, eps, rho, method=solver,
                                                          reg_type='kl', numItermax=iters,
                                                          stopThr=tol, log=True)
            return plan, eps * log['logu'], eps * log['logv']
    if method == 'geomloss':
        from geomloss import SamplesLoss
        loss = SamplesLoss('sinkhorn', p=2, blur=math.sqrt(eps),
                           reach=None if math.isinf(rho) else math.sqrt(rho), debias=False,
                           potentials=True, scaling=scaling, backend='tensorized')
        f, g = loss(x, y)
        f, g = f.reshape(-1), g.reshape(-1)
        plan = torch.exp(torch.log(a)[:, None] + torch.log(b)[None, :] +
                         (f[:, None] + g[None, :] - cost) / eps)
        return plan, f, g
    raise ValueError(method)


def plan_of(solution):
    plan = solution[0]
    return plan.plan if hasattr(plan, 'plan') else plan


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- workers


class PeakRSS:
    """Peak growth of the resident set above its value at ``start``, in MB.

    ``ru_maxrss`` cannot be reset, so transients of the setup (freed before the solve)
    would hide part of the solve's peak; a thread samples ``/proc/self/statm`` every
    millisecond instead (torch and BLAS release the GIL while they work).
    """

    def __init__(self):
        import threading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.base = self.peak = self._rss()

    @staticmethod
    def _rss():
        with open('/proc/self/statm') as fh:
            return int(fh.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')

    def _poll(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self._rss())

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        return (self.peak - self.base) / 2**20


def worker(spec):
    """Run one (method, size, dim) case in this process and return a result dict.

    A method name ``name@T`` runs ``name`` with T CPU threads (set for BLAS and OpenMP
    by ``run_isolated`` before the subprocess starts).
    """
    device = spec['device']
    if '@' in spec['method']:
        spec = dict(spec, method=spec['method'].split('@')[0])
        torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    torch.manual_seed(0)
    size = spec['size']
    x, y, cost, a, b = make_problem(size, spec['dim'], device)
    eps, rho, iters = spec['eps'], spec['rho'], spec['iters']
    method = spec['method']
    if method.startswith('floor'):
        return memory_floor(cost, method, iters, spec['repeats'])
    run_method(method, x[:64], y[:64], cost[:64, :64].contiguous(), a[:64] * size / 64,
               b[:64] * size / 64, eps, rho, 5)  # warm-up: imports, first-call costs
    times, peak, solution = timed_runs(
        lambda: run_method(method, x, y, cost, a, b, eps, rho, iters), spec['repeats'], device)
    err = marginal_error(plan_of(solution), solution[1], solution[2], a, b, rho)
    return {'time': statistics.median(times), 'times': times, 'peak_mb': peak, 'err': err}


def timed_runs(solve, repeats, device):
    """``(times, peak_mb, last result)``: one memory run first, then ``repeats`` timed runs.

    The memory run comes first, before the allocator holds freed blocks of earlier
    runs, and is separate because the RSS sampling thread competes for the GIL and a
    core with the solver being timed.
    """
    sync(device)
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
        result = solve()
        sync(device)
        peak = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    else:
        rss = PeakRSS().start()
        result = solve()
        peak = rss.stop()
    times = []
    for _ in range(repeats):
        result = None
        sync(device)
        t0 = time.perf_counter()
        result = solve()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times, peak, result


def memory_floor(cost, method, iters, repeats):
    """Time to read the N x M matrix twice per iteration, ``iters`` iterations."""
    mat = cost if method == 'floor-fp32' else cost.half()
    vec = torch.rand(mat.shape[1], device=mat.device, dtype=mat.dtype)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(2 * iters):
            torch.mv(mat, vec)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {'time': statistics.median(times), 'times': times, 'peak_mb': 0.0, 'err': float('nan')}


def run_isolated(spec, isolate):
    """Run a worker spec in a fresh subprocess (CPU peak memory) or in-process (GPU)."""
    if not isolate:
        try:
            return block_worker(spec) if spec.get('kind') == 'block' else worker(spec)
        except Exception as error:  # one failing peer must not lose the other rows
            torch.cuda.empty_cache()
            note = ('out of memory' if isinstance(error, torch.cuda.OutOfMemoryError)
                    else f'{type(error).__name__}: {str(error)[:60]}')
            print(f'  {spec.get("method", spec.get("mode"))} failed: {error!r}', flush=True)
            return {'time': float('nan'), 'peak_mb': float('nan'), 'err': float('nan'),
                    'note': note}
    cmd = [sys.executable, os.path.abspath(__file__), '--worker', json.dumps(spec)]
    env = dict(os.environ)
    if '@' in spec.get('method', ''):
        threads = spec['method'].split('@')[1]
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if proc.returncode != 0:
        return {'time': float('nan'), 'peak_mb': float('nan'), 'err': float('nan'),
                'note': proc.stderr.strip().splitlines()[-1][:80] if proc.stderr else 'failed'}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- sections


def methods_for(device):
    if device.startswith('cuda'):
        return ['ours', 'ours-cublas', 'ours-unfused', 'ours-graphs', 'ours-fp16',
                'ours-fp16-unfused', 'ours-fp16-cublas', 'ours-bf16', 'pot-torch',
                'pot-torch-stab', 'geomloss', 'floor-fp32', 'floor-fp16']
    # POT gets both thread settings: on small or busy machines waking a second BLAS/OpenMP
    # thread for every vector operation can cost more than the operation.
    return ['ours', 'pot-torch', 'pot-torch@1', 'pot-torch-stab', 'pot-numpy', 'pot-numpy@1',
            'pot-numpy-stab', 'geomloss']


def speed_section(args, device, isolate, lines):
    lines += ['## Fixed iterations', '',
              f'N = M, eps {args.eps}, rho {args.rho}, {args.iters} iterations (geomloss: its own '
              'annealing schedule, scaling 0.5), median of '
              f'{args.repeats} runs. ratio = time / fastest POT time of the same case. '
              '`@1`: run with one CPU thread (BLAS and OpenMP); other rows use the default.', '',
              '| N | d | method | time (s) | ms / iter | peak mem (MB) | marginal error | '
              'ratio to POT |', '|---|---|---|---|---|---|---|---|']
    for size in args.sizes:
        for dim in args.dims:
            results = {}
            for method in methods_for(device):
                spec = dict(method=method, size=size, dim=dim, eps=args.eps, rho=args.rho,
                            iters=args.iters, repeats=args.repeats, device=device)
                results[method] = run_isolated(spec, isolate)
                print(f'  {size} {dim} {method}: {results[method]}', flush=True)
            pot = [r['time'] for m, r in results.items()
                   if m.startswith('pot') and math.isfinite(r['time'])]
            best = min(pot) if pot else float('nan')
            for method, r in results.items():
                per_iter = (1e3 * r['time'] / args.iters
                            if method != 'geomloss' and math.isfinite(r['time']) else float('nan'))
                note = f" ({r['note']})" if 'note' in r else ''
                lines.append(f"| {size} | {dim} | {method}{note} | {r['time']:.3f} | "
                             f"{per_iter:.2f} | {r['peak_mb']:.0f} | {r['err']:.1e} | "
                             f"{r['time'] / best:.2f} |")
    lines.append('')


def iterations_section(args, lines):
    """Iterations to marginal error 1e-6 (fp64) per acceleration setting."""
    ot_mod = import_ot()
    from mmseg_saot.ot.synthetic import ClusteredFeatures
    lines += ['## Iterations to marginal error 1e-6 (fp64, N = M = 1024, d 384)', '',
              '| data | rho | plain | TI | omega 1.5 | TI + omega 1.5 | TI + omega auto |',
              '|---|---|---|---|---|---|---|']
    geometry = ClusteredFeatures(384, seed=0)
    data = {
        'clustered': (geometry.sample(1024, seed=1)[0], geometry.sample(1024, seed=2)[0]),
        'diffuse': tuple(torch.nn.functional.normalize(torch.randn(1024, 384, generator=g), dim=1)
                         for g in (torch.Generator().manual_seed(1),
                                   torch.Generator().manual_seed(2))),
    }
    settings = [(1.0, False), (1.0, True), (1.5, False), (1.5, True), ('auto', True)]
    for name, (x, y) in data.items():
        cost = ot_mod.cosine_cost(x.double(), y.double())
        for rho in (args.rho, math.inf, 10.0):
            cells = []
            for omega, ti in settings:
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore')
                    res = ot_mod.sinkhorn(cost, epsilon=args.eps, rho=rho, tol=1e-6,
                                          num_iters=5000, omega=omega, translation_invariant=ti,
                                          check_every=5)
                cells.append(str(res.num_iters) + ('' if bool(res.converged) else '+'))
            lines.append(f'| {name} | {rho} | ' + ' | '.join(cells) + ' |')
    lines += ['', '`+`: not converged in 5000 iterations. TI has no effect when balanced.', '']


def accuracy_section(args, device, lines):
    """Time to reach a marginal error of 1e-6 against an fp64 reference."""
    size = args.accuracy_size or (16384 if device.startswith('cuda') else 4096)
    dim = 384
    x, y, cost, a, b = make_problem(size, dim, device)
    ref = run_method('ours-fp64', x, y, cost, a, b, args.eps, args.rho, 5000, tol=1e-12)[0]
    ref_rows, ref_cols = [m.double() for m in ref.marginals()]
    del ref

    def distance(solution):
        plan = plan_of(solution).double()
        return float(((plan.sum(1) - ref_rows).abs().sum() + (plan.sum(0) - ref_cols).abs().sum())
                     / ref_rows.sum())

    lines += [f'## Time to accuracy (N = M = {size}, d {dim}, eps {args.eps}, rho {args.rho})',
              '', 'Smallest setting whose plan has marginals within 1e-6 (relative L1) of an fp64 '
              'reference solve; time is the median of '
              f'{args.repeats} runs at that setting.', '',
              '| method | setting | time (s) | distance to reference |', '|---|---|---|---|']
    candidates = {
        'ours': [('tol', t) for t in (1e-5, 1e-6, 1e-7, 1e-8)],
        'pot-torch': [('iters', n) for n in (50, 100, 200, 400, 800, 1600)],
        'geomloss': [('scaling', s) for s in (0.5, 0.7, 0.8, 0.9, 0.95, 0.98)],
    }
    if not device.startswith('cuda'):
        candidates['pot-numpy'] = candidates['pot-torch']
    if device.startswith('cuda'):
        candidates['ours-fp16'] = candidates['ours']
    for method, settings in candidates.items():
        found = None
        for kind, value in settings:
            kw = dict(iters=5000, tol=value) if kind == 'tol' else (
                dict(iters=value) if kind == 'iters' else dict(iters=0, scaling=value))
            sol = run_method(method, x, y, cost, a, b, args.eps, args.rho, **kw)
            dist = distance(sol)
            del sol
            if dist <= 1e-6:
                found = (kind, value, kw, dist)
                break
        if found is None:
            lines.append(f'| {method} | not reached ({kind} {value}: {dist:.1e}) | - | - |')
            continue
        kind, value, kw, dist = found
        times = []
        for _ in range(args.repeats):
            sync(device)
            t0 = time.perf_counter()
            run_method(method, x, y, cost, a, b, args.eps, args.rho, **kw)
            sync(device)
            times.append(time.perf_counter() - t0)
        lines.append(f'| {method} | {kind} {value} | {statistics.median(times):.3f} | '
                     f'{dist:.1e} |')
        print(f'  accuracy {method}: {lines[-1]}', flush=True)
    lines.append('')


def block_worker(spec):
    """Dense or block-sparse labelling at SAOT's working point; returns stats and labels."""
    ot_mod = import_ot()
    from mmseg_saot.ot.synthetic import saot_working_point
    device = spec['device']
    if spec.get('data') == 'streets':
        xs, ls, xt, lt = streets_problem(spec['features'], spec.get('seed', 0))
    else:
        xs, ls, xt, lt = saot_working_point(dim=spec['dim'],
                                            target_hw=tuple(spec.get('target_hw', (37, 74))),
                                            seed=spec.get('seed', 0))
    xs, ls, xt = xs.to(device), ls.to(device), xt.to(device)
    dense_f = {}  # the dense solution's source potential, for the block run's diagnostic

    def solve():
        if spec['mode'] == 'dense':
            res = ot_mod.sinkhorn(ot_mod.cosine_cost(xs, xt), epsilon=spec['eps'],
                                  rho=spec['rho'], tol=spec['tol'])
            dense_f['f'] = res.f
            transfer = ot_mod.transfer_labels(res, ls, NUM_CLASSES)
            return transfer.labels, dict(ambiguous=_ambiguous_share(transfer.probs))
        res = block_solve()
        extra = dict(support=res.support_fraction, phases=res.timings)
        return ot_mod.transfer_labels(res, ls, NUM_CLASSES).labels, extra

    def block_solve(**kwargs):
        return ot_mod.block_sparse_sinkhorn(
            xs, xt, epsilon=spec['eps'], rho=spec['rho'], tol=spec['tol'],
            selection=spec['selection'], coverage=spec['coverage'], theta=spec['theta'],
            block_size=spec['block_size'], target_block_size=spec['target_block_size'],
            **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        times, peak, (labels, extra) = timed_runs(solve, spec['repeats'], device)
        if spec['mode'] == 'dense' and spec.get('potentials_out'):
            torch.save(dense_f['f'].cpu(), spec['potentials_out'])
        if spec['mode'] != 'dense':  # the dropped-mass diagnostic is opt-in: one extra run
            res = block_solve(dropped_samples=64)
            extra.update(dropped=res.dropped_mass, dropped_worst=res.dropped_mass_worst,
                         dropped_time=res.timings['dropped_mass'])
            if spec.get('dense_potentials'):
                f = torch.load(spec['dense_potentials'], weights_only=True).to(device)
                extra['truncation_labels'] = truncation_labels(ot_mod, res, f, ls)
    labelled = lt != 255  # street scenes: patches without a majority class
    acc = float((labels.cpu() == lt)[labelled].float().mean())
    return dict(time=statistics.median(times), times=times, peak_mb=peak, acc=acc,
                labels=labels.cpu().tolist(), **extra)


def truncation_labels(ot_mod, block_res, dense_f, source_labels):
    """Target labels of the dense solution's plan restricted to the block support.

    The block-sparse labels differ from the dense ones for two reasons: the support
    leaves out part of every target's mass (truncation), and the restricted problem
    has other potentials (a source that lost targets raises its potential and sends
    more mass to the ones it kept). Voting with the dense potentials on the same
    support keeps the first and removes the second. Labels do not depend on the target
    potential (each target's votes are normalised), so only the dense ``f`` is needed.

    Args:
        block_res: the block-sparse result (its support and target potential are used).
        dense_f: ``(N,)`` source potential of the dense solution of the same problem.
        source_labels: ``(N,)`` source labels.
    """
    restricted = dataclasses.replace(block_res, f=dense_f.to(block_res.f))
    return ot_mod.transfer_labels(restricted, source_labels, NUM_CLASSES).labels.cpu().tolist()


def dense_and_block(spec, isolate):
    """``(dense, block)`` results of one working point. The block run's truncation-only
    labels use the dense run's potential (through a temporary file), not a second
    dense solve."""
    with tempfile.TemporaryDirectory() as folder:
        potentials = os.path.join(folder, 'dense_f.pt')
        dense = run_isolated(dict(spec, mode='dense', potentials_out=potentials), isolate)
        found = potentials if os.path.exists(potentials) else None
        block = run_isolated(dict(spec, mode='block', dense_potentials=found), isolate)
    return dense, block


def _ambiguous_share(probs):
    """Share of targets whose two best class votes differ by less than 0.1."""
    top2 = probs.topk(2, dim=-1).values
    return float(((top2[:, 0] - top2[:, 1]) < 0.1).float().mean())


NUM_CLASSES = 19  # Cityscapes train ids, both working points
STREETS_SIZE = (518, 1036)  # 37 x 74 patches of 14 px, as the synthetic working point
WEIGHTS_HINT = 'run `make weights` (README, "Offline weights")'


def streets_seed_file(folder, seed):
    """The cached features of one street-scene set: one file per seed."""
    return os.path.join(folder, f'seed_{seed}.pt')


def streets_features(seeds, folder, weights=None):
    """Cache real frozen features of street scenes at SAOT's working point in ``folder``.

    For each seed, one target in the demo's "real" style and 8 sources in its "game"
    style (``mmseg_saot.datasets.synthetic_streets``), 1036 x 518 pixels, through the
    offline DINOv2 ViT-S/14 (last block, d 384), with each patch's majority label. Each
    seed is written to its own file as soon as it is done (about 30 s on 2 CPU cores) and
    never recomputed. The backbone runs in a fresh subprocess (the full package, not
    :func:`import_ot`'s), which finds the weights as the configs do (``weights``: None)
    or uses the file given.
    """
    missing = [seed for seed in seeds if not os.path.exists(streets_seed_file(folder, seed))]
    if not missing:
        return
    if weights is not None and not os.path.exists(os.path.expanduser(weights)):
        sys.exit(f'--block-data streets needs the offline DINOv2 ViT-S/14 weights; {weights} '
                 f'does not exist: {WEIGHTS_HINT}.')
    spec = dict(kind='streets_features', seeds=missing, folder=folder, weights=weights)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker',
                           json.dumps(spec)], cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f'computing the street-scene features failed (exit {proc.returncode}; '
                 'its message is above)')


def streets_features_worker(spec):
    """Render and encode the scenes of :func:`streets_features` (in its subprocess)."""
    sys.path.insert(0, ROOT)
    import mmseg_saot  # noqa: F401  (the compat shims mmseg needs here)
    from mmseg_saot.datasets import synthetic_streets as streets
    from mmseg_saot.datasets.cityscapes_labels import label_ids_to_train_ids
    from mmseg_saot.models.backbones.dinov2 import DINOv2Backbone
    from mmseg_saot.models.labelers.patch_labels import patch_labels
    from mmseg_saot.utils.atomic import atomic_torch_save
    from mmseg_saot.utils.imagenet import normalize_images
    from mmseg_saot.utils.weights import DEFAULT_WEIGHTS_FILE, default_weights_cache
    weights = os.path.expanduser(spec['weights'] or
                                 str(default_weights_cache() / DEFAULT_WEIGHTS_FILE))
    if not os.path.exists(weights):
        sys.exit(f'--block-data streets needs the offline DINOv2 ViT-S/14 weights at '
                 f'{weights}: {WEIGHTS_HINT}.')
    backbone = DINOv2Backbone('vit_small_patch14_dinov2', out_indices=[11],
                              checkpoint=weights).eval()
    height, width = STREETS_SIZE
    os.makedirs(spec['folder'], exist_ok=True)
    for seed in spec['seeds']:
        images, labels = [], []
        for index in range(9):  # index 0: the target
            style = streets.TARGET_STYLE if index == 0 else streets.SOURCE_STYLE
            image, label_ids = streets.render_scene([seed, index], style, width=width,
                                                    height=height)
            images.append(torch.from_numpy(image).permute(2, 0, 1).float())
            labels.append(torch.from_numpy(label_ids_to_train_ids(label_ids)).long())
        images = normalize_images(torch.stack(images))
        with torch.no_grad():
            feats = torch.cat([backbone(images[i:i + 3])[-1] for i in range(0, 9, 3)])
        # a finished seed survives an interrupt
        atomic_torch_save(dict(feats=feats.half(),
                               labels=patch_labels(torch.stack(labels)).to(torch.uint8)),
                          streets_seed_file(spec['folder'], seed))
        print(f'  street scenes seed {seed}: features {tuple(feats.shape)}', flush=True)
    return dict(seeds=spec['seeds'])


def streets_problem(folder, seed):
    """Sources (8 images, labelled patches only) and target of one cached scene set.

    Each domain's mean feature is removed before normalising, as ``SAOTLabeler`` does
    with ``center_features=True``.

    Returns:
        ``(source_feats, source_labels, target_feats, target_labels)``; target labels
        are 255 where a patch has no majority class.
    """
    import torch.nn.functional as F
    entry = torch.load(streets_seed_file(folder, seed))
    feats = entry['feats'].float().flatten(2).transpose(1, 2)  # (9, M, D)
    labels = entry['labels'].long().flatten(1)
    xs, ls = feats[1:].flatten(0, 1), labels[1:].flatten()
    labelled = ls != 255
    xs, ls = xs[labelled], ls[labelled]
    xt, lt = feats[0], labels[0]
    return (F.normalize(xs - xs.mean(0), dim=1), ls, F.normalize(xt - xt.mean(0), dim=1), lt)


def block_problem_text(args, seed):
    """How the block-sparse section's problem was made, for the table headers."""
    if args.block_data == 'streets':
        return (f'street scenes seed {seed} (`--block-data streets`: one "real"-style '
                'target against 8 "game"-style sources of `synthetic_streets`, 1036 x 518, '
                'real frozen DINOv2 ViT-S/14 features, d 384, labelled source patches only, '
                'each domain mean removed)')
    return (f'draw {seed} of the synthetic working point, d 1024, clustered synthetic '
            'features (19 classes)')


def block_section(args, device, isolate, lines):
    ot_mod = import_ot()
    from mmseg_saot.ot.block_sparse import estimate_memory
    common = dict(device=device, dim=1024, eps=args.eps, rho=args.rho, tol=args.block_tol,
                  repeats=args.repeats, selection='coverage', coverage=args.block_coverage,
                  theta=args.theta, block_size=64, target_block_size=16,
                  data=args.block_data, features=args.streets_features)
    if args.block_data == 'streets':
        streets_features(args.block_seeds, args.streets_features)
    dense, sparse = dense_and_block(dict(common, kind='block', seed=args.block_seeds[0]),
                                    isolate)
    lines += ['## Block-sparse vs dense at the SAOT working point', '',
              'One 37 x 74-patch target (2738 points) against 8 sources of the same size (up '
              f'to 21904 points; {block_problem_text(args, args.block_seeds[0])}), '
              f'eps {args.eps}, rho {args.rho}, tol '
              f'{args.block_tol}; both from features to target labels (cost + solve + P^T Y). '
              f'Block-sparse: coverage selection ({args.block_coverage} of '
              'each target\'s estimated mass), k-means block order, blocks 64 sources x 16 '
              'targets, fp32 kernel. Time and memory are without the dropped-mass diagnostic '
              '(opt-in), which one extra run estimates on 64 targets.', '',
              'The column "truncation only" votes with the dense solution\'s potentials on '
              'the same support: the labels that the support alone changes; the rest of the '
              'change comes from the restricted problem\'s potentials (sources that lost '
              'targets send more mass to the ones they kept).', '',
              '| solver | time (s) | peak mem (MB) | support | labels changed vs dense | '
              'truncation only | dropped mass (est.) | label acc. vs truth |',
              '|---|---|---|---|---|---|---|---|']
    if 'labels' not in dense or 'labels' not in sparse:
        lines += [f'| failed: {dense.get("note")} / {sparse.get("note")} | | | | | | | |', '']
        return
    changed = changed_share(dense['labels'], sparse['labels'])
    truncated = truncation_cell(dense, sparse)
    lines.append(f"| dense | {dense['time']:.2f} | {dense['peak_mb']:.0f} | 1.00 | - | - | 0 | "
                 f"{dense['acc']:.4f} |")
    lines.append(f"| block-sparse | {sparse['time']:.2f} | {sparse['peak_mb']:.0f} | "
                 f"{sparse['support']:.2f} | {100 * changed:.2f} % | {truncated} | "
                 f"{sparse['dropped']:.1e} | {sparse['acc']:.4f} |")
    lines.append(f"| ratio dense / block | {dense['time'] / sparse['time']:.2f}x | "
                 f"{dense['peak_mb'] / max(sparse['peak_mb'], 1e-9):.2f}x | | | | | |")
    phases = ', '.join(f'{k} {v:.2f}s' for k, v in sparse['phases'].items())
    lines += ['', f'Block-sparse phases (last run): {phases}; dropped-mass diagnostic (not '
              f"in the time above) {sparse['dropped_time']:.2f}s.", '']
    full_n, full_m = 8 * 73 * 146, 73 * 146
    for storage, nbytes in (('fp32', 4), ('fp16', 2)):
        est = estimate_memory(full_n, full_m, 1024, sparse['support'], storage_bytes=nbytes)
        lines.append(f"Full resolution (73 x 146 target, {full_n} sources, d 1024), {storage} "
                     f"kernel: estimated peak {est['block_sparse_bytes'] / 2**30:.1f} GiB "
                     f"block-sparse at support {sparse['support']:.2f} vs "
                     f"{est['dense_bytes'] / 2**30:.1f} GiB dense (16 GiB budget).")
    lines.append('')
    if len(args.block_seeds) > 1:
        seed_rows(common, args.block_seeds, isolate, lines, {args.block_seeds[0]: (dense, sparse)},
                  'street scenes' if args.block_data == 'streets' else
                  'draws of the synthetic working point (`seed` of `saot_working_point`)')
    del ot_mod


def changed_share(reference, labels):
    """Share of targets whose label differs from ``reference`` (lists of ints)."""
    return sum(p != q for p, q in zip(reference, labels)) / len(reference)


def truncation_cell(dense, block):
    """The "truncation only" table cell: share of labels changed, or - if not measured."""
    if 'truncation_labels' not in block:
        return '-'
    return f"{100 * changed_share(dense['labels'], block['truncation_labels']):.2f} %"


def seed_rows(common, seeds, isolate, lines, done, what):
    """The same comparison on other seeds: draws of the synthetic working point, or
    street-scene sets (``--block-data streets``).

    A synthetic seed draws new class centres, domain shift and per-image class mixes;
    how diffuse the plan is, hence the support that the coverage rule keeps, varies a
    lot between seeds, so a single one is not the whole story. ``done`` maps a seed to
    its already measured ``(dense, sparse)`` results; ``what`` names the seeds' problems.
    """
    lines += [f'Other {what}; same settings; median of the same runs:', '',
              '| seed | dense (s) | block-sparse (s) | time ratio | peak MB dense / block | '
              'support | labels changed | truncation only | dense targets with vote margin '
              '< 0.1 | label acc. vs truth dense / block |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for seed in seeds:
        dense, sparse = done.get(seed) or dense_and_block(dict(common, kind='block', seed=seed),
                                                          isolate)
        if 'labels' not in dense or 'labels' not in sparse:
            lines.append(f'| {seed} | failed: {dense.get("note")} / {sparse.get("note")} '
                         '| | | | | | | | |')
            continue
        changed = changed_share(dense['labels'], sparse['labels'])
        truncated = truncation_cell(dense, sparse)
        lines.append(f"| {seed} | {dense['time']:.2f} | {sparse['time']:.2f} | "
                     f"{dense['time'] / sparse['time']:.2f}x | {dense['peak_mb']:.0f} / "
                     f"{sparse['peak_mb']:.0f} | {sparse['support']:.2f} | "
                     f"{100 * changed:.2f} % | {truncated} | "
                     f"{100 * dense['ambiguous']:.1f} % | "
                     f"{dense['acc']:.4f} / {sparse['acc']:.4f} |")
        print(f'  block seed {seed}: {lines[-1]}', flush=True)
    lines.append('')


def fullres_section(args, device, isolate, lines):
    """Measured (not estimated) block-sparse labelling of a full-resolution target."""
    lines += ['## Full resolution: 1024 x 2048 target (73 x 146 patches) against 8 sources', '']
    if not device.startswith('cuda'):
        lines += ['Skipped on CPU (the 16 GB budget is GPU memory); see the estimate above.', '']
        return
    common = dict(device=device, dim=1024, eps=args.eps, rho=args.rho, tol=args.block_tol,
                  repeats=1, selection='coverage', coverage=args.block_coverage, theta=args.theta,
                  block_size=64, target_block_size=16, target_hw=(73, 146), kind='block')
    lines += ['10658 targets against 85264 sources, d 1024, same settings as the working '
              'point; peak = torch.cuda.max_memory_allocated above the resident features.', '',
              '| solver | time (s) | peak GPU mem (GiB) | support | fits 16 GiB |',
              '|---|---|---|---|---|']
    for mode in ('block', 'dense'):
        res = run_isolated(dict(common, mode=mode), isolate)
        peak = res['peak_mb'] / 1024
        note = f" ({res['note']})" if 'note' in res else ''
        support = f"{res['support']:.2f}" if 'support' in res else '1.00'
        lines.append(f"| {'block-sparse' if mode == 'block' else 'dense'}{note} | "
                     f"{res['time']:.2f} | {peak:.2f} | {support} | "
                     f"{'yes' if peak < 16 else 'no'} |")
    lines.append('')


def machine_line(device):
    import_ot()  # the package without its mmseg-importing __init__
    from mmseg_saot.utils.machine import describe_device
    name = describe_device(device)
    versions = [f'torch {torch.__version__}']
    for mod in ('ot', 'geomloss'):
        try:
            versions.append(f'{mod} {importlib.import_module(mod).__version__}')
        except ImportError:
            versions.append(f'{mod} missing')
    return f'Machine: {name}; ' + ', '.join(versions) + '.'


def main(argv=None):
    from mmseg_saot.utils.arg_types import (device_option, non_negative_int_list, output_file,
                                            positive_float, positive_int, positive_int_list)
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        type=device_option)
    parser.add_argument('--sizes', type=positive_int_list, default=None,
                        help='comma-separated N = M (default: CPU 1024,4096; GPU '
                        '1024,4096,16384,32768)')
    parser.add_argument('--dims', type=positive_int_list, default='384,1024',
                        help='comma-separated feature dimensions d')
    parser.add_argument('--repeats', type=positive_int, default=3)
    parser.add_argument('--iters', type=positive_int, default=100)
    parser.add_argument('--eps', type=positive_float, default=0.05)
    parser.add_argument('--rho', type=positive_float, default=1.0)
    parser.add_argument('--theta', type=positive_float, default=4.0, help='block-sparse truncation')
    parser.add_argument('--block-coverage', type=positive_float, default=0.75,
                        help="block-sparse: estimated share of each target's mass kept "
                        '(the solver default)')
    parser.add_argument('--block-seeds', type=non_negative_int_list,
                        default=[0, 1, 2], help='draws of the synthetic working point for '
                        'the block-sparse section (the first one gets the detailed table)')
    parser.add_argument('--block-tol', type=positive_float, default=1e-4,
                        help='tolerance of the working-point solves (labels are stable by 1e-4)')
    parser.add_argument('--block-data', choices=['synthetic', 'streets'], default='synthetic',
                        help='block-sparse section: synthetic clustered features (d 1024) or '
                        'real frozen ViT-S/14 features of street scenes (d 384; needs the '
                        'offline weights, `make weights`)')
    parser.add_argument('--streets-features',
                        default=os.path.join(ROOT, 'work_dirs', 'benchmark_ot', 'streets'),
                        help='folder caching the street-scene features, one file per seed '
                        '(reused between runs)')
    parser.add_argument('--accuracy-size', type=positive_int, default=None)
    parser.add_argument('--sections', default=','.join(SECTIONS),
                        help='comma-separated, run in this order: ' + ','.join(SECTIONS))
    parser.add_argument('--out', type=output_file, default=None,
                        help='the table (default: benchmarks/ot_<device>.md)')
    parser.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        kind = spec.get('kind')
        result = (block_worker(spec) if kind == 'block' else
                  streets_features_worker(spec) if kind == 'streets_features' else worker(spec))
        print(json.dumps(result))
        return
    device = args.device
    gpu = device.startswith('cuda')
    args.sizes = args.sizes or ([1024, 4096, 16384, 32768] if gpu else [1024, 4096])
    sections = [name.strip() for name in args.sections.split(',')]
    unknown = [f'"{name}"' if not name else name for name in sections if name not in SECTIONS]
    if unknown:
        parser.error(f'--sections: unknown {", ".join(unknown)}; choose from '
                     f'{",".join(SECTIONS)}')
    isolate = not gpu
    lines = [f'# OT benchmark ({device})', '', machine_line(device), '',
             f'Command: `python tools/benchmark_ot.py {" ".join(sys.argv[1:])}`', '']
    start = time.perf_counter()
    runs = dict(speed=lambda: speed_section(args, device, isolate, lines),
                iters=lambda: iterations_section(args, lines),
                accuracy=lambda: accuracy_section(args, device, lines),
                block=lambda: block_section(args, device, isolate, lines),
                fullres=lambda: fullres_section(args, device, isolate, lines))
    interrupted = None
    try:
        for name, run_section in runs.items():
            if name in sections:
                interrupted = name
                run_section()
        interrupted = None
    except KeyboardInterrupt:  # keep the sections already measured
        lines += ['', f'**Interrupted (Ctrl-C) in the {interrupted} section**: the sections '
                  'above it are complete, that one may be cut short, later ones did not run.',
                  '']
    lines.append(f'Total benchmark time: {time.perf_counter() - start:.0f} s.')
    text = '\n'.join(lines) + '\n'
    out = args.out or os.path.join(ROOT, 'benchmarks', f'ot_{device.split(":")[0]}.md')
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, 'w') as fh:
        fh.write(text)
    print(text)
    if interrupted:
        print(f'Interrupted; the sections measured so far are in {out}.', file=sys.stderr)
        sys.exit(130)


if __name__ == '__main__':
    main()
