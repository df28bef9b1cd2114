"""Convert GTA5 labels to Cityscapes train ids and count class pixels.

Expected layout (the GTA5 download, unpacked)::

    GTA5_ROOT/images/00001.png ...
    GTA5_ROOT/labels/00001.png ...     paletted PNGs of Cityscapes label ids

Writes, next to each label::

    GTA5_ROOT/labels/00001_labelTrainIds.png   uint8, 0..18 and 255 = ignore
    GTA5_ROOT/sample_class_stats.json          pixels per train id per image

Usage::

    python tools/dataset_converters/gta5.py GTA5_ROOT [--nproc 8]
        [--out-dir DIR] [--force]

Files already converted are skipped (their class counts are reused from the
previous stats file) unless ``--force``.
"""
import argparse
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmseg_saot.datasets import cityscapes_labels as labels
from mmseg_saot.datasets import class_stats
from mmseg_saot.utils.arg_types import positive_int
from mmseg_saot.utils.atomic import atomic_write_png
from mmseg_saot.utils.parallel import map_with_progress

EXPECTED_LAYOUT = 'GTA5_ROOT/images/*.png, GTA5_ROOT/labels/*.png'
TRAIN_ID_SUFFIX = '_labelTrainIds.png'


class LabelFileError(Exception):
    """A label file that cannot be read or holds no label-id image."""


class LayoutError(Exception):
    """The dataset folder does not have the expected layout."""


def read_label_ids(path: str) -> np.ndarray:
    """Read a label-id PNG as a 2-D uint8 array of Cityscapes label ids.

    GTA5's labels are paletted ('P') PNGs: the pixel values are the label ids
    and the palette only colours them, so the indices are read, never the
    colours. Single-channel ('L', 'I', 'I;16') images are read as they are.
    """
    try:
        from PIL import Image
    except ImportError:   # Pillow comes with matplotlib, a mmengine dependency
        raise LabelFileError('reading GTA5 labels needs Pillow: pip install '
                             'pillow') from None
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image)
    except Exception as error:   # truncated, not a PNG, unreadable, ...
        raise LabelFileError(
            f'cannot read label file {path}: {error}') from None
    if mode not in ('P', 'L', 'I', 'I;16') or array.ndim != 2:
        raise LabelFileError(
            f'label file {path} is a {mode} image; expected a paletted or '
            'single-channel PNG of Cityscapes label ids')
    if array.dtype != np.uint8:
        if array.min() < 0 or array.max() > 255:
            raise LabelFileError(f'label file {path} holds values '
                                 f'{array.min()}..{array.max()}, outside the '
                                 'Cityscapes label ids')
        array = array.astype(np.uint8)
    return array


def read_train_ids(path: str) -> np.ndarray:
    """Read a train-id PNG written by this tool."""
    import cv2
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 2:
        raise LabelFileError(f'cannot read converted label file {path}; '
                             'delete it or run again with --force')
    return array.astype(np.uint8)


def train_id_path(label_file: Path, out_dir: Path) -> Path:
    """``labels/00001.png`` -> ``<out_dir>/00001_labelTrainIds.png``."""
    return out_dir / (label_file.stem + TRAIN_ID_SUFFIX)


def convert_label_file(src: str, dst: str) -> Dict[str, int]:
    """Convert one label-id PNG to train ids; return its class pixel counts."""
    train_ids = labels.label_ids_to_train_ids(read_label_ids(src))
    atomic_write_png(dst, train_ids)
    return class_stats.class_pixel_counts(train_ids)


def _convert_job(job: Tuple[str, str, bool]) -> Tuple[str, Dict[str, int],
                                                      bool]:
    """Worker: convert ``src`` (or only count ``dst`` if it exists and the
    job does not force) -> (dst, counts, converted)."""
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


def convert_gta5(root: Path, out_dir: Optional[Path] = None, nproc: int = 1,
                 force: bool = False) -> Tuple[List[Dict], int]:
    """Convert every label of a GTA5 root and write its class stats.

    Returns:
        (stats records, number of files converted in this run).
    """
    root = Path(root)
    labels_dir = check_layout(root)
    out_dir = Path(out_dir) if out_dir is not None else labels_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    stats_path = root / class_stats.STATS_FILENAME

    def stats_name(path: Path) -> str:
        path = path.resolve()
        try:
            return path.relative_to(root.resolve()).as_posix()
        except ValueError:
            return str(path)

    known = {}
    if stats_path.is_file() and not force:
        try:
            known = {r['file']: r['counts']
                     for r in class_stats.load_class_stats(str(stats_path))}
        except ValueError:
            known = {}
    records, jobs = [], []
    for src in find_label_files(labels_dir):
        dst = train_id_path(src, out_dir)
        name = stats_name(dst)
        if dst.is_file() and not force and name in known:
            records.append(dict(file=name, counts=known[name]))
        else:
            jobs.append((str(src), str(dst), force or not dst.is_file()))
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


def fail(message: str) -> int:
    print(f'error: {message}', file=sys.stderr)
    return 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert GTA5 label ids to Cityscapes train ids and '
        'write per-image class pixel counts.')
    parser.add_argument('root', metavar='GTA5_ROOT',
                        help=f'GTA5 folder: {EXPECTED_LAYOUT}')
    parser.add_argument('--nproc', type=positive_int, default=os.cpu_count() or 1,
                        help='worker processes (default: all cores)')
    parser.add_argument('--out-dir', default=None,
                        help='where to write *_labelTrainIds.png '
                        '(default: GTA5_ROOT/labels)')
    parser.add_argument('--force', action='store_true',
                        help='convert again files that already exist')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.root)
    try:
        records, converted = convert_gta5(root, args.out_dir, args.nproc,
                                          args.force)
    except LayoutError as error:
        return fail(f'{error}. Expected the GTA5 layout {EXPECTED_LAYOUT} '
                    '(labels: paletted PNGs of Cityscapes label ids).')
    except LabelFileError as error:
        return fail(str(error))
    print(format_summary(records))
    print(f'{converted} converted, {len(records) - converted} already done; '
          f'class stats of {len(records)} images in '
          f'{root / class_stats.STATS_FILENAME}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
