"""Convert GTA5 labels to Cityscapes train ids and count class pixels.

Expected layout (the GTA5 download, unpacked)::

    GTA5_ROOT/images/00001.png ...
    GTA5_ROOT/labels/00001.png ...     paletted PNGs of Cityscapes label ids

Writes, next to each label::

    GTA5_ROOT/labels/00001_labelTrainIds.png   uint8, 0..18 and 255 = ignore
    GTA5_ROOT/sample_class_stats.json          pixels per train id per image

With ``--out-dir DIR`` both go to DIR instead (``DIR/00001_labelTrainIds.png``,
``DIR/sample_class_stats.json`` with file names relative to DIR, the folder
``ClassBalancedSampler`` resolves them against); GTA5_ROOT is only read. Usage::

    python tools/dataset_converters/gta5.py GTA5_ROOT [--nproc 8]
        [--out-dir DIR] [--force]

A converted file is kept if it is up to date: modified no earlier than its label
(mtime >=). An older one is converted again, and ``--force`` converts every file
again. A kept file's class counts are reused from the previous stats file when
that file is no older than it; one changed since (rewritten by hand or by another
tool) is counted again, as class-balanced sampling reads the counts.
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from mmseg_saot.datasets import cityscapes_labels as labels
from mmseg_saot.datasets import class_stats
from mmseg_saot.datasets.label_png import read_index_png, read_train_ids
from mmseg_saot.utils.arg_types import positive_int
from mmseg_saot.utils.atomic import atomic_write_png
from mmseg_saot.utils.cli import report_error
from mmseg_saot.utils.errors import UserInputError
from mmseg_saot.utils.parallel import map_with_progress
from mmseg_saot.utils.paths import ensure_folder, is_up_to_date

EXPECTED_LAYOUT = 'GTA5_ROOT/images/*.png, GTA5_ROOT/labels/*.png'
TRAIN_ID_SUFFIX = '_labelTrainIds.png'


class LayoutError(Exception):
    """The dataset folder does not have the expected layout."""


def train_id_path(label_file: Path, out_dir: Path) -> Path:
    """``labels/00001.png`` -> ``<out_dir>/00001_labelTrainIds.png``."""
    return out_dir / (label_file.stem + TRAIN_ID_SUFFIX)


def convert_label_file(src: str, dst: str) -> Dict[str, int]:
    """Convert one label-id PNG to train ids; return its class pixel counts."""
    label_ids = read_index_png(src, content='Cityscapes label ids')
    train_ids = labels.label_ids_to_train_ids(label_ids)
    atomic_write_png(dst, train_ids)
    return class_stats.class_pixel_counts(train_ids)


def _convert_job(job: Tuple[str, str, bool]) -> Tuple[str, Dict[str, int],
                                                      bool]:
    """Worker: convert ``src`` (or only count ``dst`` where the job does not
    convert: it is up to date) -> (dst, counts, converted)."""
    src, dst, convert = job
    if convert:
        return dst, convert_label_file(src, dst), True
    return dst, class_stats.class_pixel_counts(read_train_ids(dst)), False


def find_label_files(labels_dir: Path) -> List[Path]:
    """The label-id PNGs of ``labels_dir`` (outputs of this tool excluded)."""
    return sorted(p for p in labels_dir.glob('*.png')
                  if not p.name.endswith(TRAIN_ID_SUFFIX))


def check_layout(root: Path) -> Path:
    """Return ``root/labels``, or raise :class:`LayoutError`."""
    if not root.is_dir():
        raise LayoutError(f'GTA5 root {root} ' + ('is a file, not a folder' if root.exists()
                                                   else 'does not exist'))
    labels_dir = root / 'labels'
    if not labels_dir.is_dir():
        raise LayoutError(f'{labels_dir} does not exist')
    if not find_label_files(labels_dir):
        converted = any(labels_dir.glob(f'*{TRAIN_ID_SUFFIX}'))
        raise LayoutError(
            f'{labels_dir} holds no label-id PNGs to convert' +
            (f' (only converted *{TRAIN_ID_SUFFIX} files: put the original GTA5 labels '
             'next to them, or use the converted ones as they are)' if converted else ''))
    if not (root / 'images').is_dir():
        print(f'warning: {root / "images"} does not exist; converting the '
              'labels anyway', file=sys.stderr)
    return labels_dir


def stats_folder(root: Path, out_dir: Optional[Path]) -> Path:
    """Where ``sample_class_stats.json`` goes: ``out_dir`` if given, else ``root``."""
    return Path(out_dir) if out_dir is not None else Path(root)


def convert_gta5(root: Path, out_dir: Optional[Path] = None, nproc: int = 1,
                 force: bool = False) -> Tuple[List[Dict], int]:
    """Convert every label of a GTA5 root and write its class stats.

    Args:
        root: the GTA5 folder (read only when ``out_dir`` is given).
        out_dir: folder for the train-id PNGs and the stats (default: ``root/labels``
            and ``root``).
        nproc: worker processes.
        force: convert every label again, also those up to date.

    Returns:
        (stats records, number of files converted in this run).

    Raises:
        LayoutError: ``root`` lacks the GTA5 layout.
        UserInputError: ``out_dir`` cannot be created or written (a file is there).
        mmseg_saot.datasets.label_png.LabelFileError: a label cannot be converted
            (the message names it).
    """
    root = Path(root)
    labels_dir = check_layout(root)
    if out_dir is not None:
        ensure_folder(str(out_dir), option='--out-dir')
    stats_dir = stats_folder(root, out_dir)
    out_dir = Path(out_dir) if out_dir is not None else labels_dir
    stats_path = stats_dir / class_stats.STATS_FILENAME

    def stats_name(path: Path) -> str:
        return path.relative_to(stats_dir).as_posix()

    # checked before any conversion: another tool's file of that name is not replaced
    loaded = class_stats.load_replaceable_class_stats(str(stats_path))
    known = {} if force else {r['file']: r['counts'] for r in loaded}
    records, jobs = [], []
    for src in find_label_files(labels_dir):
        dst = train_id_path(src, out_dir)
        name = stats_name(dst)
        up_to_date = not force and is_up_to_date(str(dst), [str(src)])
        if up_to_date and name in known and is_up_to_date(str(stats_path), [str(dst)]):
            records.append(dict(file=name, counts=known[name]))
        else:
            jobs.append((str(src), str(dst), not up_to_date))
    converted = 0
    for dst, counts, did_convert in map_with_progress(
            _convert_job, jobs, nproc, 'GTA5 labels', chunksize=4):
        records.append(dict(file=stats_name(Path(dst)), counts=counts))
        converted += did_convert
    class_stats.save_class_stats(str(stats_path), records)
    return records, converted


def format_summary(records: List[Dict]) -> str:
    """Pixels per train class over all images, as a small table."""
    totals = class_stats.total_class_counts(records)
    total = max(sum(totals.values()), 1)
    lines = [f'{"class":<14}{"pixels":>16}{"share":>9}']
    names = dict(enumerate(labels.CLASSES))
    names[labels.IGNORE_INDEX] = 'ignored (255)'
    for train_id, count in totals.items():
        lines.append(f'{names.get(train_id, str(train_id)):<14}{count:>16,}'
                     f'{100 * count / total:>8.2f}%')
    return '\n'.join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert GTA5 label ids to Cityscapes train ids and '
        'write per-image class pixel counts.')
    parser.add_argument('root', metavar='GTA5_ROOT',
                        help=f'GTA5 folder: {EXPECTED_LAYOUT}')
    parser.add_argument('--nproc', type=positive_int, default=os.cpu_count() or 1,
                        help='worker processes (default: all cores)')
    parser.add_argument('--out-dir', default=None,
                        help='where to write *_labelTrainIds.png and '
                        'sample_class_stats.json (default: GTA5_ROOT/labels and '
                        'GTA5_ROOT)')
    parser.add_argument('--force', action='store_true',
                        help='convert again also files that are up to date (by '
                        'default a converted file is kept if it is no older than '
                        'its label)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.root)
    try:
        records, converted = convert_gta5(root, args.out_dir, args.nproc,
                                          args.force)
    except LayoutError as error:
        return report_error(f'{error}. Expected the GTA5 layout {EXPECTED_LAYOUT} '
                            '(labels: paletted PNGs of Cityscapes label ids).')
    except UserInputError as error:   # LabelFileError, an unusable --out-dir
        return report_error(str(error))
    print(format_summary(records))
    stats_path = stats_folder(root, args.out_dir) / class_stats.STATS_FILENAME
    print(f'{converted} converted, {len(records) - converted} already done; '
          f'class stats of {len(records)} images in {stats_path}')
    return 0


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('Each label file is written whole (atomically); rerun to convert the rest.'):
        sys.exit(main())
