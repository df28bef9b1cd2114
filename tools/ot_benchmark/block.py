"""The block-sparse sections: block-sparse against dense at SAOT's working point, on
several seeds, and a full-resolution target (GPU)."""
import dataclasses
import os
import statistics
import tempfile
import warnings

import torch

from .measure import run_isolated, timed_runs
from .problems import import_ot
from .streets import streets_features, streets_problem

NUM_CLASSES = 19  # Cityscapes train ids, both working points


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
