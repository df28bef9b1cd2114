"""One per-class IoU table from the runs and pseudo-label scores of a UDA experiment.

Each ``--column LABEL=SOURCE`` is one column; SOURCE is either

* ``run:WORK_DIR:BRANCH[@ITER]``: the ``teacher`` or ``student`` head of a training run,
  read from ``WORK_DIR/eval/iter_<ITER>.json`` (written by ``TeacherStudentValLoop``;
  default: the last one), or
* ``pl:JSON:METHOD``: a pseudo-labelling method scored by
  ``tools/generate_pseudo_labels.py`` (its ``pseudo_label_miou.json``).

mIoU is the mean over the classes present in the ground truth, for every column::

    python tools/summarize_uda.py --out work_dirs/demo/uda_table \\
        --column source-only=run:work_dirs/demo_source_only:student \\
        --column NN=pl:work_dirs/demo/pseudo_label_eval_val/pseudo_label_miou.json:nn
"""
import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

Column = Dict[str, Optional[float]]


def _load_json(path: str) -> dict:
    """The JSON object in ``path``; a ValueError naming the file if it is missing or bad."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f'{path} does not exist.') from None
    except json.JSONDecodeError as err:
        raise ValueError(f'{path} is not valid JSON ({err}).') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path} holds a JSON {type(data).__name__}, not an object.')
    return data


def read_run(work_dir: str, branch: str, iteration: Optional[int]) -> Tuple[Column, str]:
    """Per-class IoU of one head of a run at ``iteration`` (default: the last eval)."""
    records = sorted(glob.glob(osp.join(work_dir, 'eval', 'iter_*.json')),
                     key=lambda p: int(re.findall(r'iter_(\d+)', p)[-1]))
    if iteration is not None:
        records = [p for p in records if p.endswith(f'iter_{iteration}.json')]
    if not records:
        raise FileNotFoundError(
            f'no evaluation {"at iteration " + str(iteration) if iteration else ""} in '
            f'{work_dir}/eval/: train with val_cfg=dict(type="TeacherStudentValLoop") and '
            'val_evaluator=dict(type="ClassIoUMetric").')
    record = _load_json(records[-1])
    if branch not in record or not record[branch].get('per_class_iou'):
        heads = sorted(k for k, v in record.items() if isinstance(v, dict))
        raise ValueError(f'{records[-1]} has no per-class IoU for the {branch} head; it has '
                         f'{heads}.')
    column = dict(record[branch]['per_class_iou'])
    return column, f'{branch} head, iteration {record["iter"]}'


def read_pseudo_labels(path: str, method: str) -> Tuple[Column, str]:
    """Per-class IoU of one method in a ``pseudo_label_miou.json``."""
    report = _load_json(path)
    if method not in report.get('methods', {}):
        raise ValueError(f'{path} has no method {method!r}; it has '
                       f'{sorted(report.get("methods", {}))}.')
    return (dict(report['methods'][method]['per_class_iou']),
            f'{method} pseudo-labels, {report.get("num_images", "?")} images')


def read_column(spec: str) -> Tuple[str, Column, str]:
    """``LABEL=run:DIR:BRANCH[@ITER]`` or ``LABEL=pl:JSON:METHOD``."""
    label, _, source = spec.partition('=')
    kind, _, rest = source.partition(':')
    where, _, what = rest.rpartition(':')
    if not label or kind not in ('run', 'pl') or not where or not what:
        raise ValueError(f'--column {spec!r}: expected LABEL=run:WORK_DIR:BRANCH[@ITER] or '
                         'LABEL=pl:JSON:METHOD.')
    if kind == 'pl':
        return (label, *read_pseudo_labels(where, what))
    branch, _, iteration = what.partition('@')
    if iteration and not iteration.isdigit():
        raise ValueError(f'--column {spec!r}: @ITER must be an iteration number, got '
                         f'{iteration!r}.')
    return (label, *read_run(where, branch, int(iteration) if iteration else None))


def mean_iou(column: Column) -> float:
    values = [v for v in column.values() if v is not None]
    return sum(values) / len(values) if values else math.nan


def format_table(columns: List[Tuple[str, Column, str]]) -> str:
    """Markdown table: classes as rows (those in some column's truth), mIoU last."""
    labels = [label for label, _, _ in columns]
    classes = [c for c in columns[0][1] if any(col.get(c) is not None for _, col, _ in columns)]
    lines = ['| class | ' + ' | '.join(labels) + ' |',
             '|---|' + '---:|' * len(labels)]
    for cls in classes:
        cells = [col.get(cls) for _, col, _ in columns]
        lines.append(f'| {cls} | ' + ' | '.join('-' if v is None else f'{v:.1f}'
                                                for v in cells) + ' |')
    lines.append('| **mIoU** | ' + ' | '.join(f'**{mean_iou(col):.1f}**'
                                               for _, col, _ in columns) + ' |')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--column', action='append', required=True,
                        help='LABEL=run:WORK_DIR:BRANCH[@ITER] or LABEL=pl:JSON:METHOD')
    parser.add_argument('--out', help='write <out>.md and <out>.json')
    args = parser.parse_args(argv)
    try:
        columns = [read_column(spec) for spec in args.column]
    except (OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    table = format_table(columns)
    notes = '\n'.join(f'- {label}: {what}' for label, _, what in columns)
    print(f'\nPer-class IoU (%) on the target val split\n\n{table}\n\n{notes}')
    drops = [f'{a[0]} -> {b[0]}: {mean_iou(b[1]) - mean_iou(a[1]):+.1f}'
             for a, b in zip(columns, columns[1:])]
    print('\nmIoU change, column to column: ' + '; '.join(drops))
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out + '.md', 'w') as f:
            f.write(table + '\n\n' + notes + '\n')
        with open(args.out + '.json', 'w') as f:
            json.dump({label: dict(per_class_iou=col, miou=round(mean_iou(col), 2), source=what)
                       for label, col, what in columns}, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
