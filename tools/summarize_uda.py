"""One per-class IoU table from the runs and pseudo-label scores of a UDA experiment.

Each ``--column LABEL=SOURCE`` is one column; SOURCE is either

* ``run:WORK_DIR:BRANCH[@ITER]``: the ``teacher`` or ``student`` head of a training run,
  read from ``WORK_DIR/eval/iter_<ITER>.json`` (written by ``TeacherStudentValLoop``;
  default: the last one), or
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
import csv
import glob
import io
import json
import math
import os
import os.path as osp
import re
import sys
from typing import Dict, List, NamedTuple, Optional, Tuple

Column = Dict[str, Optional[float]]


class Source(NamedTuple):
    """One ``--column``."""

    label: str
    iou: Column  # per-class IoU (%), None for a class absent from the ground truth
    what: str  # where it comes from, for the notes under the table
    reported_miou: Optional[float] = None  # a ref column's own mean, if it gives one
    reference: bool = False  # a ref: column (not measured by this repository's tools)
    split: Optional[str] = None  # the split it was scored on; None: not recorded (or ref)
    dataset: Optional[str] = None  # the images it was scored on; None: not recorded

    @property
    def miou(self) -> float:
        return mean_iou(self.iou, self.reported_miou)


def read_text(path: str) -> str:
    """The UTF-8 text of ``path`` (a leading byte order mark dropped); a ValueError naming
    the file and the line of the first bad byte if it is missing or not UTF-8."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f'{path} does not exist.') from None
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b'\n') + 1
        raise ValueError(f'{path} is not UTF-8 text (byte 0x{data[err.start]:02x} on line '
                         f'{line}); save it as UTF-8.') from None
    return text[1:] if text.startswith('\ufeff') else text


def _load_json(path: str) -> dict:
    """The JSON object in ``path``; a ValueError naming the file if it is missing or bad."""
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f'{path} is not valid JSON ({err}).') from None
    if not isinstance(data, dict):
        raise ValueError(f'{path} holds a JSON {type(data).__name__}, not an object.')
    return data


VAL_LOOP_ADVICE = ('train with val_cfg=dict(type="TeacherStudentValLoop") and '
                   'val_evaluator=dict(type="ClassIoUMetric").')


def _last_log(work_dir: str) -> Tuple[Optional[str], Optional[int], bool]:
    """The run's latest ``<time>/vis_data/scalars.json``, the last iteration it logs and
    whether it logs an mIoU (a validation); ``(None, None, False)`` without a log."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        return None, None, False
    last, validated = None, False
    with open(logs[-1], encoding='utf-8', errors='replace') as f:
        for line in f:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            last = entry.get('iter', entry.get('step', last))
            validated = validated or any(k.endswith('mIoU') for k in entry)
    return logs[-1], last, validated


def no_evaluation(work_dir: str) -> str:
    """Why ``work_dir`` has no ``eval/iter_*.json``, in one line naming the run: not
    validated yet, validated without the per-class record, or no training log at all.

    Args:
        work_dir: the run folder.
    """
    log, last, validated = _last_log(work_dir)
    where = f'no evaluation in {work_dir}/eval/'
    if log is None:
        return f'{where}: {VAL_LOOP_ADVICE}'
    if validated:
        return (f'{where}: the run was validated ({log} logs an mIoU) without writing '
                f'per-class IoU; {VAL_LOOP_ADVICE}')
    reached = f'it reaches iteration {last}' if last is not None else 'it logs no iteration'
    return (f'{where}: the run has not been validated yet ({log}: {reached}, no mIoU); '
            'summarise it after its first validation (every train_cfg.val_interval '
            'iterations and at the end of training).')


def read_run(work_dir: str, branch: str,
             iteration: Optional[int]) -> Tuple[Column, str, Optional[str]]:
    """Per-class IoU of one head of a run at ``iteration`` (default: the last eval), its
    description, and the images it was validated on (None: not recorded)."""
    if not osp.isdir(work_dir):
        raise FileNotFoundError(f'run folder {work_dir} ' + (
            'is a file: give the run\'s work_dir (the folder holding eval/)'
            if osp.exists(work_dir) else 'does not exist.'))
    records = sorted(glob.glob(osp.join(work_dir, 'eval', 'iter_*.json')),
                     key=lambda p: int(re.findall(r'iter_(\d+)', p)[-1]))
    if not records:
        raise FileNotFoundError(no_evaluation(work_dir))
    if iteration is not None:
        found = [p for p in records if p.endswith(f'iter_{iteration}.json')]
        if not found:
            kept = ', '.join(re.findall(r'iter_(\d+)', p)[-1] for p in records)
            raise FileNotFoundError(f'no evaluation at iteration {iteration} in '
                                    f'{work_dir}/eval/; it has iterations {kept}.')
        records = found
    record = _load_json(records[-1])
    head = record.get(branch)
    if not isinstance(head, dict):
        heads = sorted(k for k, v in record.items() if isinstance(v, dict) and k != 'dataset')
        raise ValueError(f'{records[-1]} has no per-class IoU for the {branch} head; it has '
                         f'{heads}.')
    if not head.get('per_class_iou'):
        raise ValueError(f'{records[-1]}: the {branch} head was validated without per-class '
                         f'IoU (metrics {sorted(head.get("metrics", {}))}); {VAL_LOOP_ADVICE}')
    column = dict(head['per_class_iou'])
    return column, f'{branch} head, iteration {record["iter"]}', images(record)


def images(record: dict) -> Optional[str]:
    """``'CityscapesDataset data/cityscapes/leftImg8bit/val'``: the images a score file
    (``eval/iter_*.json``, ``pseudo_label_miou.json``) records under ``dataset``, or None
    where it does not (written before they were recorded). ``img_path`` holds the
    dataset's ``data_root`` already."""
    dataset = record.get('dataset')
    return f'{dataset.get("type")} {dataset.get("img_path")}' if isinstance(
        dataset, dict) else None


def read_pseudo_labels(path: str, method: str) -> Tuple[Column, str, Optional[str],
                                                        Optional[str]]:
    """Per-class IoU of one method in a ``pseudo_label_miou.json``, its description, and
    the split and images it was scored on (None: not recorded)."""
    report = _load_json(path)
    if method not in report.get('methods', {}):
        raise ValueError(f'{path} has no method {method!r}; it has '
                       f'{sorted(report.get("methods", {}))}.')
    return (dict(report['methods'][method]['per_class_iou']),
            f'{method} pseudo-labels, {report.get("num_images", "?")} images',
            report.get('split'), images(report))


def _iou_value(path: str, name: str, text) -> Optional[float]:
    if text is None or (isinstance(text, str) and text.strip() in ('', '-')):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f'{path}: the IoU of {name!r} is {text!r}, not a number.') from None
    if not 0.0 <= value <= 100.0:
        raise ValueError(f'{path}: the IoU of {name!r} is {value}; IoU is in % (0 to 100).')
    return value


def _read_csv(path: str) -> Dict[str, str]:
    """``{class: IoU text}`` of a ``class,IoU`` CSV (an optional ``class,...`` header and
    a ``mIoU,<value>`` line included); a ValueError naming the file if it is missing, not
    UTF-8, has a short line or lists a name twice."""
    reader = csv.reader(io.StringIO(read_text(path), newline=''))
    rows = [(reader.line_num, row) for row in reader if row and row[0].strip()]
    if rows and rows[0][1][0].strip().lower() == 'class':
        rows = rows[1:]  # header
    if any(len(row) < 2 for _, row in rows):
        raise ValueError(f'{path}: every line must be class,IoU.')
    entries, lines = {}, {}
    for line, row in rows:
        name = row[0].strip()
        if name in entries:
            raise ValueError(f'{path}: {name!r} is listed twice (lines {lines[name]} and '
                             f'{line}); keep one line per class.')
        entries[name], lines[name] = row[1], line
    return entries


def read_reference(path: str) -> Tuple[Column, str, Optional[float]]:
    """Per-class IoU (%) of another method from a CSV or JSON file (see the module doc)."""
    if path.endswith('.csv'):
        entries, source = _read_csv(path), 'reference'
    else:
        data = _load_json(path)
        entries = data.get('per_class_iou', data)
        source = str(data.get('source', 'reference'))
        if 'miou' in data:
            entries = dict(entries, mIoU=data['miou'])
    reported = entries.pop('mIoU', entries.pop('miou', None))
    column = {name: _iou_value(path, name, value) for name, value in entries.items()}
    if not column:
        raise ValueError(f'{path} lists no class.')
    return column, f'{source} ({path})', _iou_value(path, 'mIoU', reported)


def read_column(spec: str) -> Source:
    """``LABEL=run:DIR:BRANCH[@ITER]``, ``LABEL=pl:JSON:METHOD`` or ``LABEL=ref:FILE``."""
    label, _, source = spec.partition('=')
    kind, _, rest = source.partition(':')
    if kind == 'ref' and label and rest:
        return Source(label, *read_reference(rest), reference=True)
    where, _, what = rest.rpartition(':')
    if not label or kind not in ('run', 'pl') or not where or not what:
        raise ValueError(f'--column {spec!r}: expected LABEL=run:WORK_DIR:BRANCH[@ITER], '
                         'LABEL=pl:JSON:METHOD or LABEL=ref:FILE.')
    if kind == 'pl':
        column, what, split, dataset = read_pseudo_labels(where, what)
        return Source(label, column, what, split=split, dataset=dataset)
    branch, _, iteration = what.partition('@')
    if iteration and not iteration.isdigit():
        raise ValueError(f'--column {spec!r}: @ITER must be an iteration number, got '
                         f'{iteration!r}.')
    column, what, dataset = read_run(where, branch, int(iteration) if iteration else None)
    # TeacherStudentValLoop validates on val_dataloader
    return Source(label, column, what, split='val', dataset=dataset)


def check_class_names(columns: List[Source]) -> None:
    """Every class of a ``ref`` column must be one of the measured columns' classes."""
    known = list(dict.fromkeys(c for column in columns if not column.reference
                               for c in column.iou))
    for column in columns:
        unknown = [c for c in column.iou if known and c not in known]
        if unknown:
            raise ValueError(f'--column {column.label}: {column.what} names classes the other '
                             f'columns do not have: {unknown}; use these names: {known}.')


def check_same_classes(columns: List[Source]) -> None:
    """Every measured (``run``/``pl``) column must cover the same classes: columns of
    different class lists (different datasets' classes) give per-class rows and means
    over different label sets, which one table cannot compare.

    Raises:
        ValueError: naming the first column whose classes differ from the first
            measured column's, and the classes only one of them has.
    """
    measured = [column for column in columns if not column.reference]
    for column in measured[1:]:
        first = measured[0]
        only_first = [c for c in first.iou if c not in column.iou]
        only_this = [c for c in column.iou if c not in first.iou]
        if only_first or only_this:
            raise ValueError(
                f'--column {first.label} ({first.what}) and --column {column.label} '
                f'({column.what}) are scored on different classes ({len(first.iou)} and '
                f'{len(column.iou)}; only in {first.label}: {only_first or "none"}; only in '
                f'{column.label}: {only_this or "none"}): their per-class IoU and mIoU '
                'cannot be compared. Summarise runs of one dataset\'s classes per table.')


def check_has_values(columns: List[Source]) -> None:
    """Every column must give some class an IoU; a column whose every class is absent
    from its ground truth would be a blank column with an mIoU of nan.

    Raises:
        ValueError: naming the column and where its numbers come from.
    """
    for column in columns:
        if not covered(column):
            raise ValueError(f'--column {column.label} ({column.what}): no class has an IoU '
                             '(every class is absent from its ground truth); nothing to show.')


def provenance(column: Source) -> str:
    """Where a measured column's numbers come from: split and images, or 'unknown'."""
    split = f'{column.split} split' if column.split else 'split unknown'
    return f'{split}, {column.dataset}' if column.dataset else split


def mixed_provenance(columns: List[Source]) -> List[str]:
    """One warning per way the measured columns' images may differ: different splits,
    different recorded datasets, or a pseudo-label file that records no split."""
    measured = [column for column in columns if not column.reference]
    found = []
    for field, name in (('split', 'splits'), ('dataset', 'images')):
        values = {getattr(column, field) for column in measured} - {None}
        if len(values) > 1:
            found.append(f'the columns are scored on different {name} (' + '; '.join(
                f'{column.label}: {getattr(column, field)}' for column in measured
                if getattr(column, field)) + '): their IoUs are not over the same images.')
    for column in measured:
        if column.split is None:
            found.append(f'--column {column.label}: its file does not record the split it was '
                         'scored on (written before the split was recorded): split unknown; '
                         'score it again with tools/generate_pseudo_labels.py to record it.')
    return found


def check_labels(specs: List[str]) -> None:
    """Every ``--column`` LABEL must be new: the JSON output is keyed by label."""
    seen = set()
    for spec in specs:
        label = spec.partition('=')[0]
        if label and label in seen:
            raise ValueError(f'--column: the label {label!r} is given twice; give every '
                             'column its own label.')
        seen.add(label)


def covered(column: Source) -> List[str]:
    """The classes a column's computed mIoU is the mean over (those with a value)."""
    return [c for c, v in column.iou.items() if v is not None]


def partial_references(columns: List[Source]) -> Dict[str, str]:
    """``{label: why}`` for each ``ref`` column whose computed mIoU is not over the classes
    of the others: the measured columns' classes, or with none, all columns' classes."""
    basis = [column for column in columns if not column.reference] or columns
    others = list(dict.fromkeys(c for column in basis for c in covered(column)))
    found = {}
    for column in columns:
        if not column.reference or column.reported_miou is not None:
            continue
        own = covered(column)
        lacks = [c for c in others if c not in own]
        adds = [c for c in own if c not in others]
        if lacks or adds:
            what = '; '.join(part for part in (
                f'it lacks {", ".join(lacks)}' if lacks else '',
                f'it adds {", ".join(adds)}' if adds else '') if part)
            found[column.label] = (
                f'its mIoU is the mean over the {len(own)} class{"es" * (len(own) != 1)} '
                f'it gives, the other columns\' over {len(others)} ({what})')
    return found


def mean_iou(column: Column, reported: Optional[float] = None) -> float:
    if reported is not None:
        return reported
    values = [v for v in column.values() if v is not None]
    return sum(values) / len(values) if values else math.nan


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
    parser.add_argument('--out', help='write <out>.md and <out>.json')
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


def write_outputs(out: str, table: str, notes: str, columns: List[Source]) -> None:
    """``<out>.md`` (table and notes) and ``<out>.json`` (per column)."""
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with open(out + '.md', 'w') as f:
        f.write(table + '\n\n' + notes + '\n')
    with open(out + '.json', 'w') as f:
        json.dump({column.label: dict(per_class_iou=column.iou, miou=round(column.miou, 2),
                                      source=column.what, split=column.split,
                                      dataset=column.dataset)
                   for column in columns}, f, indent=1)


if __name__ == '__main__':
    sys.exit(main())
