"""Read one ``--column`` of ``tools/summarize_uda.py``: a run's evaluation, a pseudo-label
score file, or a reference table, with where its numbers come from."""
import csv
import glob
import io
import json
import math
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
    num_images: Optional[int] = None  # how many; None: not recorded

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
    except IsADirectoryError:
        raise ValueError(f'{path} is a folder; give the file in it (e.g. '
                         f'{path.rstrip("/")}/pseudo_label_eval_val/pseudo_label_miou.json '
                         'for pl:).') from None
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
    logs = sorted(glob.glob(osp.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')))
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


def eval_records(work_dir: str) -> List[str]:
    """The run's ``eval/iter_<N>.json`` files in iteration order; other files there (a
    copy named ``iter_best.json``, an editor's backup) are not evaluations and are left
    out. ``work_dir`` is taken literally (``run[1]`` is a name, not a glob pattern)."""
    by_iteration = []
    for path in glob.glob(osp.join(glob.escape(work_dir), 'eval', 'iter_*.json')):
        match = re.fullmatch(r'iter_(\d+)\.json', osp.basename(path))
        if match:
            by_iteration.append((int(match.group(1)), path))
    return [path for _, path in sorted(by_iteration)]


def _of_the_latest_run(work_dir: str, records: List[str]) -> List[str]:
    """``records`` up to the one written last. Within one run a later iteration is
    validated later; an evaluation of a higher iteration written before another is an
    earlier run's left in the folder (a new run into the same work_dir, not resumed),
    which is said on stderr. Gaps under a minute are not read as such (a copy without
    the file times, ``cp -r``, writes the files in any order within seconds)."""
    written = [osp.getmtime(path) for path in records]
    newest = max(range(len(records)), key=written.__getitem__)
    if newest == len(records) - 1 or written[newest] - written[-1] < 60:
        return records
    print(f'warning: {work_dir}/eval/ holds evaluations of more than one run: '
          f'{osp.basename(records[-1])} was written before {osp.basename(records[newest])}; '
          f'the latest run\'s last, {osp.basename(records[newest])}, is used (give '
          '@ITERATION in the column for another).', file=sys.stderr)
    return records[:newest + 1]


def read_run(work_dir: str, branch: str,
             iteration: Optional[int]) -> Tuple[Column, str, Optional[str], Optional[int]]:
    """Per-class IoU of one head of a run at ``iteration`` (default: the last eval), its
    description, and the images it was validated on and their number (None: not
    recorded)."""
    if not osp.isdir(work_dir):
        raise FileNotFoundError(f'run folder {work_dir} ' + (
            'is a file: give the run\'s work_dir (the folder holding eval/)'
            if osp.exists(work_dir) else 'does not exist.'))
    records = eval_records(work_dir)
    if not records:
        raise FileNotFoundError(no_evaluation(work_dir))
    if iteration is not None:
        found = [p for p in records if p.endswith(f'iter_{iteration}.json')]
        if not found:
            kept = ', '.join(re.findall(r'iter_(\d+)', p)[-1] for p in records)
            raise FileNotFoundError(f'no evaluation at iteration {iteration} in '
                                    f'{work_dir}/eval/; it has iterations {kept}.')
        records = found
    else:
        records = _of_the_latest_run(work_dir, records)
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
    return (column, f'{branch} head, iteration {record["iter"]}', images(record),
            image_count(record))


def image_count(record: dict) -> Optional[int]:
    """How many images a score file records it was measured on (None: not recorded)."""
    dataset = record.get('dataset')
    count = (dataset.get('num_images') if isinstance(dataset, dict) else None)
    count = record.get('num_images') if count is None else count
    return count if isinstance(count, int) else None


def images(record: dict) -> Optional[str]:
    """``'CityscapesDataset data/cityscapes/leftImg8bit/val'``: the images a score file
    (``eval/iter_*.json``, ``pseudo_label_miou.json``) records under ``dataset``, or None
    where it does not (written before they were recorded). ``img_path`` holds the
    dataset's ``data_root`` already."""
    dataset = record.get('dataset')
    return f'{dataset.get("type")} {dataset.get("img_path")}' if isinstance(
        dataset, dict) else None


def read_pseudo_labels(path: str, method: str) -> Tuple[Column, str, Optional[str],
                                                        Optional[str], Optional[int]]:
    """Per-class IoU of one method in a ``pseudo_label_miou.json``, its description, and
    the split, images and number of images it was scored on (None: not recorded)."""
    report = _load_json(path)
    if method not in report.get('methods', {}):
        raise ValueError(f'{path} has no method {method!r}; it has '
                       f'{sorted(report.get("methods", {}))}.')
    return (dict(report['methods'][method]['per_class_iou']),
            f'{method} pseudo-labels, {report.get("num_images", "?")} images',
            report.get('split'), images(report), image_count(report))


def _iou_value(path: str, name: str, text) -> Optional[float]:
    """The IoU in %, or None for a class absent from the ground truth: empty, ``-``, or
    ``nan`` (MMSeg's tables print nan there; JSON may hold NaN)."""
    if text is None or (isinstance(text, str) and text.strip() in ('', '-')):
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f'{path}: the IoU of {name!r} is {text!r}, not a number.') from None
    if math.isnan(value):
        return None
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
        if not isinstance(entries, dict):
            raise ValueError(f'{path}: per_class_iou must be an object of class: IoU (%), got '
                             f'a {type(entries).__name__}.')
        source = str(data.get('source', 'reference'))
        entries = dict(entries)
        entries.pop('source', None)  # a flat file's label, not a class
        for key in ('mIoU', 'miou'):  # a mean beside per_class_iou, either spelling
            if key in data:
                entries.setdefault('mIoU', data[key])
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
        column, what, split, dataset, count = read_pseudo_labels(where, what)
        return Source(label, column, what, split=split, dataset=dataset, num_images=count)
    branch, _, iteration = what.partition('@')
    if iteration and not iteration.isdigit():
        raise ValueError(f'--column {spec!r}: @ITER must be an iteration number, got '
                         f'{iteration!r}.')
    column, what, dataset, count = read_run(where, branch,
                                            int(iteration) if iteration else None)
    # TeacherStudentValLoop validates on val_dataloader
    return Source(label, column, what, split='val', dataset=dataset, num_images=count)


def mean_iou(column: Column, reported: Optional[float] = None) -> float:
    if reported is not None:
        return reported
    values = [v for v in column.values() if v is not None]
    return sum(values) / len(values) if values else math.nan


