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
not timed, except for geomloss which starts from features); in the fixed-iteration
table over rounds in which every method of a case runs once, in turn, so that the
machine's slow spells (the 2-core VM runs twice as fast in some minutes as in
others) fall on all methods alike. Peak memory is the extra
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
    python tools/benchmark_ot.py --sections block --block-data streets --block-seeds 0,1,2 \
        --out benchmarks/ot_cpu_block_streets.md   # a part of the sections: its own file
"""
import argparse
import importlib
import json
import math
import os
import shlex
import statistics
import sys
import time
import warnings

import torch

# the parts in tools/ot_benchmark/ (appended: tools/ must not shadow other modules)
_TOOLS = os.path.dirname(os.path.abspath(__file__))
if _TOOLS not in sys.path:
    sys.path.append(_TOOLS)
from ot_benchmark.block import block_section, fullres_section  # noqa: E402
from ot_benchmark.measure import interleaved_rounds, run_in_process, sync  # noqa: E402
from ot_benchmark.problems import ROOT, import_ot, make_problem, plan_of, run_method  # noqa: E402

SECTIONS = ('speed', 'iters', 'accuracy', 'block', 'fullres')


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
              f'{args.repeats} rounds (each method of a case runs once per round, in turn, so '
              'that a slow spell of the machine meets every method alike). '
              'ratio = time / fastest POT time of the same case. '
              '`@1`: run with one CPU thread (BLAS and OpenMP); other rows use the default.', '',
              '| N | d | method | time (s) | ms / iter | peak mem (MB) | marginal error | '
              'ratio to POT |', '|---|---|---|---|---|---|---|---|']
    for size in args.sizes:
        for dim in args.dims:
            specs = {method: dict(method=method, size=size, dim=dim, eps=args.eps,
                                  rho=args.rho, iters=args.iters, repeats=1, device=device)
                     for method in methods_for(device)}
            results = interleaved_rounds(specs, args.repeats, isolate)
            for method, result in results.items():
                print(f'  {size} {dim} {method}: {result}', flush=True)
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
              'reference solve (POT: the fewest iterations, bisected between the steps of '
              'its grid; ours: a tolerance ladder; geomloss: a scaling ladder); time is the '
              f'median of {args.repeats} runs at that setting.', '',
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
    def setting_kw(kind, value):
        return dict(iters=5000, tol=value) if kind == 'tol' else (
            dict(iters=value) if kind == 'iters' else dict(iters=0, scaling=value))

    def distance_at(method, kind, value):
        solution = run_method(method, x, y, cost, a, b, args.eps, args.rho,
                              **setting_kw(kind, value))
        return distance(solution)

    for method, settings in candidates.items():
        found, below = None, 0
        for kind, value in settings:
            dist = distance_at(method, kind, value)
            if dist <= 1e-6:
                found = (kind, value, dist)
                break
            below = value
        if found is None:
            lines.append(f'| {method} | not reached ({kind} {value}: {dist:.1e}) | - | - |')
            continue
        kind, value, dist = found
        if kind == 'iters':  # the fewest iterations that get there, not the grid's step
            while value - below > 1:
                middle = (below + value) // 2
                middle_dist = distance_at(method, kind, middle)
                if middle_dist <= 1e-6:
                    value, dist = middle, middle_dist
                else:
                    below = middle
        kw = setting_kw(kind, value)
        times = []
        for _ in range(args.repeats):
            sync(device)
            t0 = time.perf_counter()
            run_method(method, x, y, cost, a, b, args.eps, args.rho, potentials=False, **kw)
            sync(device)
            times.append(time.perf_counter() - t0)
        lines.append(f'| {method} | {kind} {value} | {statistics.median(times):.3f} | '
                     f'{dist:.1e} |')
        print(f'  accuracy {method}: {lines[-1]}', flush=True)
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
    threads = ('' if device.startswith('cuda') else
               f' ({torch.get_num_threads()} torch threads where a row has no @T)')
    return f'Machine: {name}{threads}; ' + ', '.join(versions) + '.'


def invocation(argv=None) -> str:
    """The command as typed (``argv``, default ``sys.argv[1:]``), quoted for a shell."""
    return shlex.join(['python', 'tools/benchmark_ot.py',
                       *(sys.argv[1:] if argv is None else argv)])


def main(argv=None):
    import_ot()  # first: the package without its mmseg-importing __init__
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
        print(json.dumps(run_in_process(spec)))
        return
    device = args.device
    gpu = device.startswith('cuda')
    args.sizes = args.sizes or ([1024, 4096, 16384, 32768] if gpu else [1024, 4096])
    sections = [name.strip() for name in args.sections.split(',')]
    unknown = [f'"{name}"' if not name else name for name in sections if name not in SECTIONS]
    if unknown:
        parser.error(f'--sections: unknown {", ".join(unknown)}; choose from '
                     f'{",".join(SECTIONS)}')
    default_out = os.path.join('benchmarks', f'ot_{device.split(":")[0]}.md')
    if args.out is None and set(sections) != set(SECTIONS):
        parser.error(f'--sections {args.sections} runs a part of the benchmark: give --out '
                     f'FILE (the default, {default_out}, holds the whole table)')
    isolate = not gpu
    lines = [f'# OT benchmark ({device})', '', machine_line(device), '',
             f'Command: `{invocation(argv)}`', '']
    start = time.perf_counter()
    runs = dict(speed=lambda: speed_section(args, device, isolate, lines),
                iters=lambda: iterations_section(args, lines),
                accuracy=lambda: accuracy_section(args, device, lines),
                block=lambda: block_section(args, device, isolate, lines),
                fullres=lambda: fullres_section(args, device, isolate, lines))
    interrupted, failed, how = None, [], 'Ctrl-C'
    try:
        for name, run_section in runs.items():
            if name in sections:
                interrupted = name
                try:
                    run_section()
                except (Exception, SystemExit) as error:  # keep the other sections
                    reason = f'{type(error).__name__}: {error}'
                    failed.append(name)
                    lines += ['', f'**The {name} section failed** ({reason}); the other '
                              'sections are complete.', '']
                    print(f'the {name} section failed: {reason}', file=sys.stderr)
        interrupted = None
    except KeyboardInterrupt as stop:  # keep the sections already measured
        # under interrupt_exits a SIGTERM (timeout, a scheduler) arrives as Terminated
        how = 'SIGTERM' if type(stop).__name__ == 'Terminated' else how
        lines += ['', f'**Interrupted ({how}) in the {interrupted} section**: the sections '
                  'above it are complete, that one may be cut short, later ones did not run.',
                  '']
    lines.append(f'Total benchmark time: {time.perf_counter() - start:.0f} s.')
    text = '\n'.join(lines) + '\n'
    out = args.out or os.path.join(ROOT, default_out)
    if interrupted and os.path.exists(out):  # an earlier whole table stays as it is
        out = os.path.splitext(out)[0] + '.partial.md'
    from mmseg_saot.utils.atomic import atomic_write_text
    atomic_write_text(out, text)  # a second Ctrl-C here leaves the old table whole
    print(text)
    if interrupted:
        print(f'Interrupted ({how}); the sections measured so far are in {out}.',
              file=sys.stderr)
        sys.exit(143 if how == 'SIGTERM' else 130)  # the shell's codes
    if failed:
        print(f'{", ".join(failed)} failed (see {out}).', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    import_ot()
    from mmseg_saot.utils.interrupts import interrupt_exits
    # SIGTERM (timeout, a scheduler) then stops it as Ctrl-C does: measured sections stay
    with interrupt_exits():
        main()
