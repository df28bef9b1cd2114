"""Pseudo-label quality as the domain shift grows: SAOT and its ablations on the demo.

For each shift ``t`` the demo's 50 target val images are rendered again (same seeds)
with the target style moved ``t`` of the way from the source ("game") style to the
"real" preset (``make_demo_data.py --target-shift t``; 1 is the demo itself) and scored
by ``tools/generate_pseudo_labels.py --split val``, the same code path as the demo's
method table. The source (``data/demo/gta5``: run ``make demo-data weights`` first) is
the same for every shift; a missing one stops the sweep with that tool's message.
Prints and writes one table: mIoU per method and shift, and saot / nn::

    python tools/benchmark_shift.py                      # shifts 0, 0.25, ..., 1
    python tools/benchmark_shift.py --shifts 0.5 1 --methods nn saot --out /tmp/shift.md

The first shift takes about 2.5 minutes on 2 CPU cores, mostly the 200 source images
through the backbone; their features go to a disk store (``<work-dir>/features``, 0.8 MB
per image, see ``generate_pseudo_labels.py --feature-cache``) that the other shifts read,
so each of them takes about 70 s. Finished shifts are reused (their JSON under
``--work-dir``), so an interrupted sweep resumes; ``--force`` scores them again. A shift
is reused only if it was scored with the same resolved config (the file and its bases,
e.g. edited labeller settings) and source data (``data/demo/DONE.json``) and has every
method asked for; one scored otherwise is scored again, with a line saying why.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_METHODS = ['nn', 'knn', 'ot_unbalanced', 'ot_metric', 'saot']
DEFAULT_OUT = 'benchmarks/demo_shift.md'
SWEEP_KEY = 'sweep_key.json'  # per shift folder: what its report was scored with


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmseg_saot.models.labelers import METHODS
    from mmseg_saot.utils.arg_types import output_file
    from mmseg_saot.utils.errors import UserInputError
    from mmseg_saot.utils.paths import ensure_folder
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='configs/saot/demo.py',
                        help='the demo config (its source set and labeller)')
    parser.add_argument('--shifts', nargs='+', type=float,
                        default=[0.0, 0.25, 0.5, 0.75, 1.0],
                        help='target shifts in [0, 1] (0: the source style)')
    parser.add_argument('--methods', nargs='+', default=DEFAULT_METHODS,
                        choices=list(METHODS),
                        help='labelling methods (see generate_pseudo_labels.py)')
    parser.add_argument('--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo_shift'),
                        help='target images and per-shift results (default: the '
                        "repository's work_dirs/demo_shift)")
    parser.add_argument('--out', default=None, type=output_file,
                        help=f'where the table is written (default, for the default sweep '
                        f'only: {DEFAULT_OUT})')
    parser.add_argument('--force', action='store_true',
                        help='score every shift again, even finished ones')
    args = parser.parse_args(argv)
    bad = [s for s in args.shifts if not 0.0 <= s <= 1.0]
    if bad:
        parser.error(f'--shifts must be in [0, 1], got {bad}')
    if args.out is None:
        if any(getattr(args, name) != parser.get_default(name)
               for name in ('config', 'shifts', 'methods')):
            parser.error(f'a sweep other than the default one needs --out FILE (the default, '
                         f'{DEFAULT_OUT}, holds the full table)')
        try:  # the repository's table, wherever the command runs from; checked as --out
            args.out = output_file(osp.join(ROOT, DEFAULT_OUT))
        except argparse.ArgumentTypeError as err:
            parser.error(f'the default --out: {err}')
    args.command = shlex.join(['python', 'tools/benchmark_shift.py',
                               *(sys.argv[1:] if argv is None else argv)])
    # the tools run from the repository root: paths given here are from the caller's
    args.work_dir, args.out = osp.abspath(args.work_dir), osp.abspath(args.out)
    try:  # before the first shift's data is rendered
        ensure_folder(args.work_dir, '--work-dir')
    except UserInputError as err:
        parser.error(str(err))
    if osp.exists(args.config):
        args.config = osp.abspath(args.config)
    return args


def shown_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it (tables name no home)."""
    inside = osp.abspath(path).startswith(ROOT + os.sep)
    return osp.relpath(path, ROOT) if inside else path


def shift_name(shift: float) -> str:
    return f'shift_{shift:g}'


def run_logged(command: List[str], log: str) -> None:
    """Run a tool of this repo with its output in ``log``; on failure show the log's end."""
    from mmseg_saot.utils.child_process import run_child
    with open(log, 'w') as f:
        returncode = run_child(command, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        sys.exit(f'{" ".join(command[1:3])} failed (exit {returncode}); the end of '
                 f'{log}:\n{tail}')


def read_mious(report_path: str, methods: List[str]) -> Optional[Dict[str, float]]:
    """mIoU (%) of ``methods`` from a generate_pseudo_labels report; None if one is missing."""
    with open(report_path) as f:
        scored = json.load(f)['methods']
    if not all(m in scored for m in methods):
        return None
    return {m: scored[m]['miou'] for m in methods}


def sweep_key(args: argparse.Namespace) -> Dict[str, str]:
    """What a finished shift must have been scored with to be reused: hashes of the
    resolved config (the file and its bases, as the tools load it), of the demo data
    stamp (``data/demo/DONE.json``: generator version, sizes, seed), of the code that
    scores it (``mmseg_saot`` and ``tools/generate_pseudo_labels.py``) and of the size
    and modification time of the backbone's weights file."""
    from mmseg_saot.utils.run_config import load_config  # a bad file stops with a message
    config = osp.join(ROOT, args.config)  # as the tools read it (an absolute path stays)
    cfg = load_config(config)
    resolved = json.dumps(cfg.to_dict(), sort_keys=True, default=repr)
    stamp = osp.join(ROOT, 'data', 'demo', 'DONE.json')
    data = Path(stamp).read_text() if osp.exists(stamp) else 'none'
    return dict(config=hashlib.sha256(resolved.encode()).hexdigest(),
                source_data=hashlib.sha256(data.encode()).hexdigest(),
                code=code_digest(), weights=_weights_stamp(cfg))


def code_digest() -> str:
    """sha256 of the labelling and scoring code: every ``mmseg_saot`` module and
    ``tools/generate_pseudo_labels.py`` (names and bytes)."""
    digest = hashlib.sha256()
    files = sorted(Path(ROOT, 'mmseg_saot').rglob('*.py'))
    for path in files + [Path(ROOT, 'tools', 'generate_pseudo_labels.py')]:
        digest.update(f'{path.relative_to(ROOT)}\n'.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _weights_stamp(cfg) -> str:
    """``'<size> <mtime ns>'`` of the backbone's weights file, or ``'none'``; a relative
    path is the repository's, where the tools this sweep runs start."""
    checkpoint = ((cfg.get('model') or {}).get('backbone') or {}).get('checkpoint')
    if not isinstance(checkpoint, str):
        return 'none'
    try:
        stat = os.stat(osp.join(ROOT, osp.expanduser(checkpoint)))
    except OSError:
        return 'missing'
    return f'{stat.st_size} {stat.st_mtime_ns}'


def reusable_mious(folder: str, report_path: str, args: argparse.Namespace,
                   key: Dict[str, str]) -> Optional[Dict[str, float]]:
    """The finished shift's mIoUs if it was scored as this sweep would score it, else None
    (printing why, unless there is nothing there)."""
    if args.force or not osp.exists(report_path):
        return None
    key_path = osp.join(folder, SWEEP_KEY)
    earlier = {}
    if osp.exists(key_path):
        with open(key_path) as f:
            earlier = json.load(f)
    changed = [name for name in key if earlier.get(name) != key[name]]
    if changed:
        why = (f'its {" and ".join(changed).replace("_", " ")} changed' if earlier
               else f'no {SWEEP_KEY} says what it was scored with')
        print(f'{osp.basename(folder)}: scoring again, {why}', flush=True)
        return None
    return read_mious(report_path, args.methods)


def score_shift(shift: float, args: argparse.Namespace,
                key: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """mIoU (%) of each method on the val images at ``shift``, from a run or a finished one
    scored with the same ``key`` (:func:`sweep_key`)."""
    key = key or sweep_key(args)
    folder = osp.join(args.work_dir, shift_name(shift))
    report_path = osp.join(folder, 'pseudo_label_eval_val', 'pseudo_label_miou.json')
    finished = reusable_mious(folder, report_path, args, key)
    if finished is not None:
        return finished
    os.makedirs(folder, exist_ok=True)
    if osp.exists(osp.join(folder, SWEEP_KEY)):  # until the new report is complete
        os.remove(osp.join(folder, SWEEP_KEY))
    data = osp.join(folder, 'data')
    run_logged([sys.executable, 'tools/dataset_converters/make_demo_data.py', '--out', data,
                '--num-source', '0', '--num-target-train', '0', '--num-target-val', '50',
                '--target-shift', str(shift)], osp.join(folder, 'make_demo_data.log'))
    run_logged([sys.executable, 'tools/generate_pseudo_labels.py', args.config,
                '--split', 'val', '--num-overlays', '2', '--work-dir', folder,
                '--methods', *args.methods,
                '--feature-cache', osp.join(args.work_dir, 'features'), '--cfg-options',
                f'val_dataloader.dataset.data_root={osp.join(data, "cityscapes")}'],
               osp.join(folder, 'generate_pseudo_labels.log'))
    from mmseg_saot.utils.atomic import atomic_write_text
    # after the report: marks it complete
    atomic_write_text(osp.join(folder, SWEEP_KEY), json.dumps(key, indent=1) + '\n')
    return read_mious(report_path, args.methods)


def format_table(results: Dict[float, Dict[str, float]], methods: List[str]) -> str:
    header = '| target shift | ' + ' | '.join(methods) + ' | saot / nn |'
    lines = [header, '|' + '---:|' * (len(methods) + 2)]
    for shift, mious in results.items():
        ratio = (f'{mious["saot"] / mious["nn"]:.2f}x'
                 if 'saot' in mious and mious.get('nn') else '-')
        cells = ' | '.join(f'{mious[m]:.1f}' for m in methods)
        lines.append(f'| {shift:g} | {cells} | {ratio} |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    results = {}
    key = sweep_key(args)
    for shift in sorted(args.shifts):
        start = time.perf_counter()
        results[shift] = score_shift(shift, args, key)
        summary = ', '.join(f'{m} {v:.1f}' for m, v in results[shift].items())
        print(f'target shift {shift:g}: {summary} ({time.perf_counter() - start:.0f} s)',
              flush=True)
    table = format_table(results, args.methods)
    sys.path.insert(0, ROOT)
    from mmseg_saot.utils.machine import describe_device
    machine = describe_device('cpu')
    text = (f'Pseudo-label mIoU (%) of the demo\'s 50 target val images, target style moved '
            f'`shift` of the way from the source style to the "real" preset (1 = the demo), '
            f'{shown_path(args.config)}; `{args.command}` on {machine}.\n\n'
            f'{table}\n')
    print('\n' + table)
    from mmseg_saot.utils.atomic import atomic_write_text
    atomic_write_text(args.out, text)
    print(f'written to {args.out}')
    return 0


if __name__ == '__main__':
    sys.path.insert(0, ROOT)
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('Finished shifts are kept under --work-dir and reused by a rerun.'):
        sys.exit(main())
