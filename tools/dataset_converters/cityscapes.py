"""Create Cityscapes train-id label images (and optional class stats).

Expected layout (``leftImg8bit_trainvaltest.zip`` and
``gtFine_trainvaltest.zip`` unpacked side by side)::

    CITYSCAPES_ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png
    CITYSCAPES_ROOT/gtFine/{train,val}/<city>/*_gtFine_polygons.json

Writes ``*_gtFine_labelTrainIds.png`` next to each annotation (the files
``mmseg``'s ``CityscapesDataset`` reads), by rendering the polygons with
cityscapesscripts' ``json2labelImg(json, png, 'trainIds')``. With
``--from-label-ids`` it maps the ``*_gtFine_labelIds.png`` images instead
(the same result, no cityscapesscripts needed; the demo data has only those).
``--class-stats`` also writes ``CITYSCAPES_ROOT/sample_class_stats.json``
(pixels per train id per image, as ``gta5.py`` does). Usage::

    python tools/dataset_converters/cityscapes.py CITYSCAPES_ROOT [--nproc 8]
        [--class-stats] [--from-label-ids] [--force]
"""
import argparse
import contextlib
import io
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

EXPECTED_LAYOUT = ('CITYSCAPES_ROOT/leftImg8bit/{train,val}/<city>/'
                   '*_leftImg8bit.png, CITYSCAPES_ROOT/gtFine/{train,val}/'
                   '<city>/*_gtFine_polygons.json')
POLYGONS_SUFFIX = '_gtFine_polygons.json'
LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'


class LayoutError(Exception):
    """The dataset folder does not have the expected layout."""


class AnnotationError(Exception):
    """An annotation file that cannot be converted."""


def find_annotations(root: Path, from_label_ids: bool) -> List[Path]:
    """Every annotation to convert under ``root/gtFine`` (all splits)."""
    suffix = LABEL_IDS_SUFFIX if from_label_ids else POLYGONS_SUFFIX
    return sorted((root / 'gtFine').glob(f'*/*/*{suffix}'))


def check_layout(root: Path, from_label_ids: bool) -> List[Path]:
    """Return the annotations to convert or raise :class:`LayoutError`."""
    if not root.is_dir():
        raise LayoutError(f'Cityscapes root {root} ' + (
            'is a file, not a folder' if root.exists() else 'does not exist'))
    for folder in ('leftImg8bit', 'gtFine'):
        for split in ('train', 'val'):
            if not (root / folder / split).is_dir():
                raise LayoutError(f'{root / folder / split} does not exist')
    annotations = find_annotations(root, from_label_ids)
    if not annotations:
        kind = LABEL_IDS_SUFFIX if from_label_ids else POLYGONS_SUFFIX
        hint = ('' if from_label_ids or not find_annotations(root, True)
                else f' (there are *{LABEL_IDS_SUFFIX} files: use '
                '--from-label-ids)')
        raise LayoutError(f'no *{kind} files under {root / "gtFine"}{hint}')
    return annotations


def train_ids_path(annotation: Path) -> Path:
    name = annotation.name
    for suffix in (POLYGONS_SUFFIX, LABEL_IDS_SUFFIX):
        if name.endswith(suffix):
            return annotation.with_name(name[:-len(suffix)] + TRAIN_IDS_SUFFIX)
    raise ValueError(f'not a Cityscapes annotation: {annotation}')


def _tmp_png(path: Path) -> Path:
    """A hidden temporary name next to ``path`` that still ends in .png (for
    cityscapesscripts, which writes the file itself)."""
    return path.with_name(f'.{path.name}.{os.getpid()}.tmp.png')


def convert_polygons(json_file: Path, out_file: Path) -> None:
    """Render one polygon annotation to train ids (via cityscapesscripts)."""
    from cityscapesscripts.preparation.json2labelImg import json2labelImg
    tmp = _tmp_png(out_file)
    printed = io.StringIO()   # it prints its errors, then calls sys.exit
    try:
        with contextlib.redirect_stdout(printed):
            json2labelImg(str(json_file), str(tmp), 'trainIds')
    except (Exception, SystemExit) as error:
        tmp.unlink(missing_ok=True)
        reason = (printed.getvalue().strip().splitlines() or [repr(error)])[0]
        raise AnnotationError(
            f'cannot convert {json_file}: {reason}') from None
    os.replace(tmp, out_file)


def convert_label_ids(png_file: Path, out_file: Path) -> None:
    """Map one ``*_gtFine_labelIds.png`` to train ids."""
    import cv2
    label_ids = cv2.imread(str(png_file), cv2.IMREAD_UNCHANGED)
    if label_ids is None or label_ids.ndim != 2:
        raise AnnotationError(f'cannot read {png_file} as a single-channel '
                              'label-id image')
    atomic_write_png(out_file, labels.label_ids_to_train_ids(label_ids))


def read_counts(train_ids_file: Path) -> Dict[str, int]:
    import cv2
    train_ids = cv2.imread(str(train_ids_file), cv2.IMREAD_UNCHANGED)
    if train_ids is None or train_ids.ndim != 2:
        raise AnnotationError(f'cannot read {train_ids_file}; delete it or '
                              'run again with --force')
    return class_stats.class_pixel_counts(train_ids.astype(np.uint8))


def _convert_job(job: Tuple[str, bool, bool, bool]
                 ) -> Tuple[str, Optional[Dict[str, int]], bool]:
    """Worker: (annotation, from label ids, force, count) ->
    (train-id file, counts or None, converted)."""
    annotation, from_label_ids, force, count = job
    annotation = Path(annotation)
    out_file = train_ids_path(annotation)
    converted = force or not out_file.is_file()
    if converted:
        if from_label_ids:
            convert_label_ids(annotation, out_file)
        else:
            convert_polygons(annotation, out_file)
    return str(out_file), read_counts(out_file) if count else None, converted


def convert_cityscapes(root: Path, nproc: int = 1, force: bool = False,
                       with_class_stats: bool = False,
                       from_label_ids: bool = False) -> Tuple[int, int]:
    """Convert every annotation of a Cityscapes root.

    Returns:
        (number of annotations, number converted in this run).
    """
    root = Path(root)
    annotations = check_layout(root, from_label_ids)
    if not from_label_ids:
        try:
            import cityscapesscripts.preparation.json2labelImg  # noqa: F401
        except ImportError:
            raise ImportError('cityscapesscripts is not installed: pip '
                              'install cityscapesscripts (or convert the '
                              f'*{LABEL_IDS_SUFFIX} files with '
                              '--from-label-ids)') from None
    jobs = [(str(a), from_label_ids, force, with_class_stats)
            for a in annotations]
    records, converted = [], 0
    for out_file, counts, did_convert in map_with_progress(
            _convert_job, jobs, nproc, 'Cityscapes labels', chunksize=8):
        converted += did_convert
        if counts is not None:
            records.append(dict(
                file=Path(out_file).relative_to(root).as_posix(),
                counts=counts))
    if with_class_stats:
        class_stats.save_class_stats(
            str(root / class_stats.STATS_FILENAME), records)
    return len(annotations), converted


def fail(message: str) -> int:
    print(f'error: {message}', file=sys.stderr)
    return 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Create Cityscapes *_gtFine_labelTrainIds.png files.')
    parser.add_argument('root', metavar='CITYSCAPES_ROOT',
                        help=f'Cityscapes folder: {EXPECTED_LAYOUT}')
    parser.add_argument('--nproc', type=positive_int, default=os.cpu_count() or 1,
                        help='worker processes (default: all cores)')
    parser.add_argument('--class-stats', action='store_true',
                        help='also write CITYSCAPES_ROOT/'
                        'sample_class_stats.json')
    parser.add_argument('--from-label-ids', action='store_true',
                        help=f'map *{LABEL_IDS_SUFFIX} instead of rendering '
                        'the polygons (no cityscapesscripts needed)')
    parser.add_argument('--force', action='store_true',
                        help='convert again files that already exist')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        total, converted = convert_cityscapes(
            Path(args.root), args.nproc, args.force, args.class_stats,
            args.from_label_ids)
    except LayoutError as error:
        return fail(f'{error}. Expected the Cityscapes layout '
                    f'{EXPECTED_LAYOUT}.')
    except (ImportError, AnnotationError) as error:
        return fail(str(error))
    print(f'{converted} converted, {total - converted} already done '
          f'(*{TRAIN_IDS_SUFFIX} under {Path(args.root) / "gtFine"})')
    if args.class_stats:
        print(f'class stats of {total} images in '
              f'{Path(args.root) / class_stats.STATS_FILENAME}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
