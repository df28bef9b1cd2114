"""One per-class IoU table from the runs and pseudo-label scores of a UDA experiment.

Each ``--column LABEL=SOURCE`` is one column; SOURCE is either

* ``run:WORK_DIR:BRANCH[@ITER]``: the ``teacher`` or ``student`` head of a training run,
  read from ``WORK_DIR/eval/iter_<ITER>.json`` (written by ``TeacherStudentValLoop``;
  default: the last one, of the latest run where an earlier run's files are left in
  the folder, with a warning), or
* ``pl:JSON:METHOD``: a pseudo-labelling method scored by
  ``tools/generate_pseudo_labels.py`` (its ``pseudo_label_miou.json``), or
* ``ref:FILE``: per-class IoU (%) of any other method, such as another UDA method's
  published table row or a model tested elsewhere: a CSV of ``class,IoU`` lines
  (``mIoU,<value>`` gives the reported mean) or a JSON object ``{"per_class_iou":
  {class: IoU}, "miou": <reported mean>, "source": "<where from>"}`` (or just
  ``{class: IoU}``), UTF-8. Class names must be those of the other columns, each once.

Every LABEL must be different. mIoU is the mean over the classes present in the ground
truth, for every column, except a ``ref`` column that reports its own (shown with ``*``).
A ``ref`` column without its own mean gets the mean over the classes it gives an IoU
for; when those are not the classes the measured (``run``/``pl``) columns cover, the
mIoU row compares means over different classes: the mean is kept, and a warning
(repeated in the notes) says how many classes it covers against the others'.

The measured columns must be scored on the same classes (else exit 2); those scored on
different splits or images, or whose file does not record its split, are warned about,
and each column's note names its split (``run`` columns: val; ``pl`` columns: the
``split`` that ``tools/generate_pseudo_labels.py`` records)::

    python tools/summarize_uda.py --out work_dirs/demo/uda_table \\
        --column source-only=run:work_dirs/demo_source_only:student \\
        --column NN=pl:work_dirs/demo/pseudo_label_eval_val/pseudo_label_miou.json:nn \\
        --column DAFormer=ref:my_baselines/daformer_gta2cs.csv
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

_TOOLS = osp.dirname(osp.abspath(__file__))
if _TOOLS not in sys.path:  # loaded by path (tests): its parts sit beside it
    sys.path.append(_TOOLS)
from uda_summary.checks import (check_class_names, check_has_values, check_labels,  # noqa: E402
                                check_same_classes, mixed_provenance, partial_references,
                                provenance)
from uda_summary.columns import VAL_LOOP_ADVICE, Source, read_column  # noqa: E402,F401

def format_table(columns: List[Source]) -> str:
    """Markdown table: classes as rows (those in some column's truth), mIoU last."""
    labels = [column.label for column in columns]
    classes = [c for c in dict.fromkeys(c for column in columns for c in column.iou)
               if any(column.iou.get(c) is not None for column in columns)]
    lines = ['| class | ' + ' | '.join(labels) + ' |',
             '|---|' + '---:|' * len(labels)]
    for cls in classes:
        cells = [column.iou.get(cls) for column in columns]
        lines.append(f'| {cls} | ' + ' | '.join('-' if v is None else f'{v:.1f}'
                                                for v in cells) + ' |')
    lines.append('| **mIoU** | ' + ' | '.join(
        f'**{column.miou:.1f}**' + ('*' if column.reported_miou is not None else '')
        for column in columns) + ' |')
    return '\n'.join(lines)


def table_title(columns: List[Source]) -> str:
    """``Per-class IoU (%) on the target <split> split`` when every measured column
    names the same split; otherwise the notes name each column's."""
    splits = {column.split for column in columns if not column.reference}
    if len(splits) == 1 and None not in splits:
        return f'Per-class IoU (%) on the target {splits.pop()} split'
    return 'Per-class IoU (%) (splits differ or are unknown: see each column\'s note)'


def format_notes(columns: List[Source], partial: Dict[str, str]) -> str:
    """One line per column: where it comes from, its split, how its mIoU is taken."""
    return '\n'.join(f'- {column.label}: {column.what}' + (
        '' if column.reference else f', {provenance(column)}') + (
        ' (* mIoU as reported there)' if column.reported_miou is not None else '') + (
        f' ({partial[column.label]})' if column.label in partial else '')
        for column in columns)


EPILOG = """Comparing: measured columns (run, pl) scored on different classes (another
dataset's class list) are refused (exit 2): their per-class rows and means are over
different label sets. Columns scored on different splits (run columns are the val split;
pl columns say which split tools/generate_pseudo_labels.py scored, --split) or different
images are shown with a warning naming them, as is a pl file written before the split was
recorded (split unknown); each column's note gives its split."""


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=EPILOG)
    parser.add_argument('--column', action='append', required=True,
                        help='LABEL=run:WORK_DIR:BRANCH[@ITER], LABEL=pl:JSON:METHOD or '
                        'LABEL=ref:FILE (CSV or JSON of per-class IoU); one LABEL per column. '
                        'A ref column without its reported mean gets the mean over the '
                        'classes it gives; a warning says when those are not the other '
                        "columns' classes")
    parser.add_argument('--out', help='write <out>.md and <out>.json (a folder, or a path '
                        'ending in /: <out>/uda_table.md and .json)')
    args = parser.parse_args(argv)
    try:
        check_labels(args.column)
        columns = [read_column(spec) for spec in args.column]
        check_class_names(columns)
        check_same_classes(columns)
        check_has_values(columns)
    except (OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    partial = partial_references(columns)
    for label, why in partial.items():
        print(f'warning: --column {label}: {why}; the mIoU row compares means over '
              'different classes. Give every class, or the reported mean as mIoU,<value>.',
              file=sys.stderr)
    for warning in mixed_provenance(columns):
        print(f'warning: {warning}', file=sys.stderr)
    table, notes = format_table(columns), format_notes(columns, partial)
    print(f'\n{table_title(columns)}\n\n{table}\n\n{notes}')
    drops = [f'{a.label} -> {b.label}: {b.miou - a.miou:+.1f}'
             for a, b in zip(columns, columns[1:])]
    if drops:
        print('\nmIoU change, column to column: ' + '; '.join(drops))
    if args.out:
        try:
            write_outputs(args.out, table, notes, columns)
        except OSError as err:
            print(f'error: --out {args.out}: cannot write there ({err.strerror}: '
                  f'{err.filename}); pick a writable path.', file=sys.stderr)
            return 2
    return 0


def output_stem(out: str) -> str:
    """The path that ``.md`` and ``.json`` are added to for ``--out out``: ``out`` itself,
    ``out/uda_table`` for a folder (or a path ending in a separator: never a hidden
    ``out/.md``), and without a ``.md``/``.json`` the user gave (never ``t.md.md``)."""
    if out.endswith(('/', osp.sep)) or osp.isdir(out):
        return osp.join(out, 'uda_table')
    stem, suffix = osp.splitext(out)
    return stem if suffix in ('.md', '.json') else out


def write_outputs(out: str, table: str, notes: str, columns: List[Source]) -> None:
    """``<out>.md`` (table and notes) and ``<out>.json`` (per column); see
    :func:`output_stem` for a folder."""
    from mmseg_saot.utils.atomic import atomic_write_text
    out = output_stem(out)
    parent = osp.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    atomic_write_text(out + '.md', table + '\n\n' + notes + '\n')
    per_column = {column.label: dict(per_class_iou=column.iou, miou=round(column.miou, 2),
                                     source=column.what, split=column.split,
                                     dataset=column.dataset)
                  for column in columns}
    atomic_write_text(out + '.json', json.dumps(per_column, indent=1) + '\n')


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('The table files were not replaced.'):
        sys.exit(main())
