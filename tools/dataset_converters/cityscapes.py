"""Create Cityscapes train-id label images (and optional class stats).

Expected layout (``leftImg8bit_trainvaltest.zip`` and
``gtFine_trainvaltest.zip`` unpacked side by side)::

    CITYSCAPES_ROOT/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png
    CITYSCAPES_ROOT/gtFine/{train,val}/<city>/*_gtFine_polygons.json

Writes ``*_gtFine_labelTrainIds.png`` next to each annotation (the files
``mmseg``'s ``CityscapesDataset`` reads; with ``--out-dir DIR`` under
``DIR/<split>/<city>/`` instead, and the class stats in DIR, for a read-only copy
of the dataset), by rendering the polygons with cityscapesscripts'
``json2labelImg(json, png, 'trainIds')``. With
``--from-label-ids`` it maps the ``*_gtFine_labelIds.png`` images instead
(the same result, no cityscapesscripts needed; the demo data has only those;
16-bit ones must hold values up to 255). ``--class-stats`` also writes
``CITYSCAPES_ROOT/sample_class_stats.json`` (pixels per train id per image of
the train split, as ``gta5.py`` does; never val or test images, as it steers
class-balanced sampling of training images); a run without it that converts train
files while that file exists warns that the file is out of date. Usage::

    python tools/dataset_converters/cityscapes.py CITYSCAPES_ROOT [--nproc 8]
        [--class-stats] [--from-label-ids] [--force] [--out-dir DIR]

The train and val splits present are converted: with only ``gtFine/val`` (or
only train) downloaded, the other split is skipped with a warning; the tool stops
only when neither ``gtFine/train`` nor ``gtFine/val`` exists. ``gtFine/test`` (and
any other folder there) is left alone, and said: Cityscapes withholds the test
labels (its annotations hold no classes to train or score on), so their train
ids would all be 255. A ``*_gtFine_labelTrainIds.png`` is kept if it is up to date: modified
no earlier than its annotation (mtime >=). An older one is converted again,
and ``--force`` converts every file again.
"""
import argparse
import contextlib
import importlib
import io
import os
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Tuple

from mmseg_saot.datasets import cityscapes_labels as labels
from mmseg_saot.datasets import class_stats
from mmseg_saot.datasets.label_png import read_index_png, read_train_ids
from mmseg_saot.utils.arg_types import positive_int
from mmseg_saot.utils.atomic import atomic_write_png
from mmseg_saot.utils.cli import report_error
from mmseg_saot.utils.errors import UserInputError
from mmseg_saot.utils.parallel import map_with_progress
from mmseg_saot.utils.paths import ensure_folder, is_up_to_date

EXPECTED_LAYOUT = ('CITYSCAPES_ROOT/leftImg8bit/{train,val}/<city>/'
                   '*_leftImg8bit.png, CITYSCAPES_ROOT/gtFine/{train,val}/'
                   '<city>/*_gtFine_polygons.json')
POLYGONS_SUFFIX = '_gtFine_polygons.json'
LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'
SPLITS = ('train', 'val')
STATS_SPLIT = 'train'   # the split whose class pixel counts --class-stats writes


class LayoutError(Exception):
    """The dataset folder does not have the expected layout."""


class AnnotationError(Exception):
    """An annotation file that cannot be converted."""


def find_annotations(root: Path, from_label_ids: bool) -> List[Path]:
    """Every annotation to convert under ``root/gtFine/<split>`` for the splits of
    :data:`SPLITS`."""
    suffix = LABEL_IDS_SUFFIX if from_label_ids else POLYGONS_SUFFIX
    return sorted(path for split in SPLITS
                  for path in (root / 'gtFine' / split).glob(f'*/*{suffix}'))


def other_folders(root: Path) -> List[str]:
    """The folders under ``root/gtFine`` that are not splits of :data:`SPLITS` (the
    test split, whose labels Cityscapes withholds): not converted."""
    gt = root / 'gtFine'
    return sorted(path.name for path in gt.iterdir()
                  if path.is_dir() and path.name not in SPLITS) if gt.is_dir() else []


def find_missing_splits(root: Path) -> List[str]:
    """The splits of :data:`SPLITS` without a ``gtFine`` folder; raise
    :class:`LayoutError` if that is all of them. A split without its
    ``leftImg8bit`` folder is converted all the same, with a warning."""
    missing = [split for split in SPLITS if not (root / 'gtFine' / split).is_dir()]
    if len(missing) == len(SPLITS):
        folders = [str(root / 'gtFine' / split) for split in SPLITS]
        raise LayoutError(f'{folders[0]} does not exist, nor does '
                          f'{" or ".join(folders[1:])}')
    for split in sorted(set(SPLITS) - set(missing)):
        if not (root / 'leftImg8bit' / split).is_dir():
            print(f'warning: {root / "leftImg8bit" / split} does not exist; '
                  f'converting the {split} labels anyway', file=sys.stderr)
    return missing


def check_layout(root: Path, from_label_ids: bool) -> Tuple[List[Path], List[str]]:
    """Return (the annotations to convert, the splits missing) or raise
    :class:`LayoutError`."""
    if not root.is_dir():
        raise LayoutError(f'Cityscapes root {root} ' + (
            'is a file, not a folder' if root.exists() else 'does not exist'))
    missing = find_missing_splits(root)
    annotations = find_annotations(root, from_label_ids)
    if not annotations:
        kind = LABEL_IDS_SUFFIX if from_label_ids else POLYGONS_SUFFIX
        hint = ('' if from_label_ids or not find_annotations(root, True)
                else f' (there are *{LABEL_IDS_SUFFIX} files: use '
                '--from-label-ids)')
        raise LayoutError(f'no *{kind} files under {root / "gtFine"}{hint}')
    return annotations, missing


def split_of(annotation: Path, root: Path) -> str:
    """``ROOT/gtFine/train/<city>/x_gtFine_polygons.json`` -> ``'train'``."""
    return annotation.relative_to(root / 'gtFine').parts[0]


def train_ids_path(annotation: Path, root: Optional[Path] = None,
                   out_dir: Optional[Path] = None) -> Path:
    """Where the train ids of ``annotation`` go: beside it, or with ``out_dir`` at the
    same place below ``out_dir`` as the annotation below ``root/gtFine``
    (``OUT_DIR/<split>/<city>/x_gtFine_labelTrainIds.png``)."""
    name = annotation.name
    for suffix in (POLYGONS_SUFFIX, LABEL_IDS_SUFFIX):
        if name.endswith(suffix):
            folder = annotation.parent
            if out_dir is not None:
                folder = Path(out_dir) / folder.relative_to(Path(root) / 'gtFine')
            return folder / (name[:-len(suffix)] + TRAIN_IDS_SUFFIX)
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
    except KeyboardInterrupt:
        tmp.unlink(missing_ok=True)
        raise
    except (Exception, SystemExit) as error:
        tmp.unlink(missing_ok=True)
        reason = (printed.getvalue().strip().splitlines() or [repr(error)])[0]
        raise AnnotationError(
            f'cannot convert {json_file}: {reason}') from None
    os.replace(tmp, out_file)


def convert_label_ids(png_file: Path, out_file: Path) -> None:
    """Map one ``*_gtFine_labelIds.png`` to train ids."""
    label_ids = read_index_png(str(png_file), content='Cityscapes label ids')
    atomic_write_png(out_file, labels.label_ids_to_train_ids(label_ids))


def read_counts(train_ids_file: Path) -> Dict[str, int]:
    """Class pixel counts of a train-id PNG written by this tool."""
    return class_stats.class_pixel_counts(read_train_ids(str(train_ids_file)))


def _convert_job(job: Tuple[str, str, bool, bool, bool]
                 ) -> Tuple[str, Optional[Dict[str, int]], bool]:
    """Worker: (annotation, train-id file, from label ids, force, count) ->
    (train-id file, counts or None, converted)."""
    annotation, out_file, from_label_ids, force, count = job
    annotation, out_file = Path(annotation), Path(out_file)
    converted = force or not is_up_to_date(str(out_file), [str(annotation)])
    if converted:
        out_file.parent.mkdir(parents=True, exist_ok=True)  # below an --out-dir
        if from_label_ids:
            convert_label_ids(annotation, out_file)
        else:
            convert_polygons(annotation, out_file)
    return str(out_file), read_counts(out_file) if count else None, converted


class Conversion(NamedTuple):
    """What :func:`convert_cityscapes` did."""
    total: int                      # annotations found
    converted: int                  # of them, converted in this run
    converted_stats_split: int      # of those, in STATS_SPLIT (what class stats count)
    missing_splits: List[str]       # splits of SPLITS without a gtFine folder
    stats_images: Optional[int]     # images in the class stats; None: not written
    out_dir: Path                   # the folder below which the train-id files are
    stats_file: Path                # the class stats file (written or not)


def convert_cityscapes(root: Path, nproc: int = 1, force: bool = False,
                       with_class_stats: bool = False,
                       from_label_ids: bool = False,
                       out_dir: Optional[Path] = None) -> Conversion:
    """Convert every annotation of a Cityscapes root.

    Args:
        root: the Cityscapes folder.
        nproc: worker processes.
        force: convert every annotation again, also those up to date.
        with_class_stats: also write ``root/sample_class_stats.json`` of the
            train split (not written when the root has no train annotations).
        from_label_ids: map ``*_gtFine_labelIds.png`` instead of rendering
            the polygons.
        out_dir: write the train ids (``OUT_DIR/<split>/<city>/...``) and the class
            stats there, and nothing under ``root`` (default: beside the annotations,
            the stats in ``root``).

    Raises:
        LayoutError: neither split is there, or no annotation is.
        ImportError: cityscapesscripts is needed and missing.
        AnnotationError, mmseg_saot.datasets.label_png.LabelFileError: an
            annotation cannot be converted (the message names it).
        UserInputError: ``out_dir`` cannot be created or written (a file is there).
    """
    root = Path(root)
    annotations, missing = check_layout(root, from_label_ids)
    if out_dir is not None:
        ensure_folder(str(out_dir), option='--out-dir')
    stats_dir = Path(out_dir) if out_dir is not None else root
    if not from_label_ids:
        try:
            importlib.import_module('cityscapesscripts.preparation.json2labelImg')
        except ImportError:
            raise ImportError('cityscapesscripts is not installed: pip '
                              'install cityscapesscripts (or convert the '
                              f'*{LABEL_IDS_SUFFIX} files with '
                              '--from-label-ids)') from None
    stats_file = stats_dir / class_stats.STATS_FILENAME
    if with_class_stats:  # before any conversion: another tool's file is not replaced
        class_stats.load_replaceable_class_stats(str(stats_file))
    out_files = [str(train_ids_path(a, root, out_dir)) for a in annotations]
    in_stats_split = {out_file: split_of(a, root) == STATS_SPLIT
                      for a, out_file in zip(annotations, out_files)}
    jobs = [(str(a), out_file, from_label_ids, force,
             with_class_stats and in_stats_split[out_file])
            for a, out_file in zip(annotations, out_files)]
    records, converted, converted_stats_split = [], 0, 0
    for out_file, counts, did_convert in map_with_progress(
            _convert_job, jobs, nproc, 'Cityscapes labels', chunksize=8):
        converted += did_convert
        converted_stats_split += did_convert and in_stats_split[out_file]
        if counts is not None:
            records.append(dict(
                file=Path(out_file).relative_to(stats_dir).as_posix(),
                counts=counts))
    if records:
        class_stats.save_class_stats(str(stats_file), records)
    return Conversion(len(annotations), converted, converted_stats_split, missing,
                      len(records) if records else None,
                      Path(out_dir) if out_dir is not None else root / 'gtFine', stats_file)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Create Cityscapes *_gtFine_labelTrainIds.png files.')
    parser.add_argument('root', metavar='CITYSCAPES_ROOT',
                        help=f'Cityscapes folder: {EXPECTED_LAYOUT}')
    parser.add_argument('--nproc', type=positive_int, default=os.cpu_count() or 1,
                        help='worker processes (default: all cores)')
    parser.add_argument('--class-stats', action='store_true',
                        help='also write CITYSCAPES_ROOT/'
                        'sample_class_stats.json (of the train split only)')
    parser.add_argument('--from-label-ids', action='store_true',
                        help=f'map *{LABEL_IDS_SUFFIX} instead of rendering '
                        'the polygons (no cityscapesscripts needed)')
    parser.add_argument('--force', action='store_true',
                        help='convert again also files that are up to date (by '
                        'default a converted file is kept if it is no older than '
                        'its annotation)')
    parser.add_argument('--out-dir', type=Path, default=None,
                        help='write OUT_DIR/<split>/<city>/*_gtFine_labelTrainIds.png '
                        '(and sample_class_stats.json) there, nothing under '
                        'CITYSCAPES_ROOT (a read-only copy); default: beside the '
                        'annotations')
    return parser.parse_args(argv)


def out_dir_usage(out_dir: Path, stats_file: Path, with_class_stats: bool) -> str:
    """How a config reads labels written to ``--out-dir`` (an absolute
    ``data_prefix.seg_map_path`` is not joined to the dataset's ``data_root``)."""
    out = Path(out_dir).resolve()
    sampler = (f'; a ClassBalancedSampler: sampler.stats_file={stats_file.resolve()}'
               if with_class_stats else '')
    return ('A config reads these labels with, e.g., --cfg-options '
            f'val_dataloader.dataset.data_prefix.seg_map_path={out / "val"} '
            f'(train: {out / "train"}{sampler})')


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.root)
    try:
        done = convert_cityscapes(root, args.nproc, args.force,
                                  args.class_stats, args.from_label_ids, args.out_dir)
    except LayoutError as error:
        return report_error(f'{error}. Expected the Cityscapes layout '
                            f'{EXPECTED_LAYOUT}.')
    except (ImportError, AnnotationError, UserInputError) as error:  # LabelFileError too
        return report_error(str(error))
    for split in done.missing_splits:
        print(f'warning: skipped the {split} split: '
              f'{root / "gtFine" / split} does not exist', file=sys.stderr)
    for name in other_folders(root):
        print(f'not converted: {root / "gtFine" / name} (only {" and ".join(SPLITS)} are; '
              'Cityscapes withholds the test labels)')
    print(f'{done.converted} converted, {done.total - done.converted} already '
          f'done (*{TRAIN_IDS_SUFFIX} under {done.out_dir})')
    if args.out_dir is not None:
        print(out_dir_usage(done.out_dir, done.stats_file, args.class_stats))
    if args.class_stats and done.stats_images is None:
        print(f'warning: no {STATS_SPLIT} annotations, so no class stats '
              'written', file=sys.stderr)
    elif args.class_stats:
        print(f'class stats of {done.stats_images} {STATS_SPLIT} images in '
              f'{done.stats_file}')
    elif done.converted_stats_split and done.stats_file.exists():
        print(f'warning: {done.stats_file} predates the '
              f'{done.converted_stats_split} {STATS_SPLIT} label files converted now, and '
              'class-balanced sampling reads it: run again with --class-stats to count '
              'them (only the counts are computed; converted files are kept)',
              file=sys.stderr)
    return 0


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('Each label file is written whole (atomically); rerun to convert the rest.'):
        sys.exit(main())
