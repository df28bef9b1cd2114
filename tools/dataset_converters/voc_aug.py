"""Build PASCAL VOC 2012's augmented training set (SBD) for MMSeg.

Usage::

    python tools/dataset_converters/voc_aug.py data/VOCdevkit data/VOCdevkit/VOCaug
        [--nproc 4] [--force]

Reads SBD's ``benchmark_RELEASE/dataset/cls/*.mat`` and VOC's own
``SegmentationClass/*.png``, writes ``VOC2012/SegmentationClassAug/*.png``
(class indices, 255 = boundary) for every name, and two lists under
``ImageSets/Segmentation/``: ``aug.txt``, SBD train + val minus VOC train and val
(9,118 images: what MMSeg's converter writes, and what its ``pascal_voc12_aug``
config concatenates with ``train.txt``), and ``trainaug.txt``, those and VOC
train (10,582 images: the augmented training set in one list).

Each name's label comes from its VOC PNG if there is one (a paletted or
single-channel PNG of class indices; a colour rendering is refused), else from
its SBD .mat. ``SegmentationClassAug/label_sources.json`` records which source
each output was made from. An output PNG is kept if it was made from the same
source and is up to date: modified no earlier than it (mtime >=). Any other is
converted again: one MMSeg's own converter wrote from SBD for a name that has a
VOC PNG (without the 255 boundaries), or one older than its source; ``--force``
converts every name again. A name with neither source, or a source that cannot
be read, stops the tool (``error: ...``, exit code 2) naming the files.
"""
import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmseg_saot.datasets.label_png import LabelFileError, read_index_png
from mmseg_saot.utils.arg_types import positive_int
from mmseg_saot.utils.atomic import atomic_write_png, atomic_write_text
from mmseg_saot.utils.cli import report_error
from mmseg_saot.utils.errors import UserInputError
from mmseg_saot.utils.parallel import map_with_progress
from mmseg_saot.utils.paths import ensure_folder, is_up_to_date

LAYOUT = ('VOC_ROOT/VOC2012/{JPEGImages,SegmentationClass,ImageSets/'
          'Segmentation/{train,val}.txt} and SBD_ROOT/benchmark_RELEASE/'
          'dataset/{cls/*.mat,train.txt,val.txt}')
VOC_CONTENT = 'VOC class indices (0-20, 255 = boundary)'
NAMES_SHOWN = 5   # missing labels named in the message; the rest are counted
SOURCES_FILE = 'label_sources.json'  # in SegmentationClassAug: what each output came from


def read_list(path: Path) -> List[str]:
    """The names of a split file, one a line (blank lines skipped)."""
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip()]


def label_source(name: str, *, voc: Path, sbd: Path) -> Optional[Path]:
    """The file ``name``'s label is made from: VOC's PNG, else SBD's .mat,
    else None (neither exists)."""
    for source in (voc / 'SegmentationClass' / f'{name}.png',
                   sbd / 'cls' / f'{name}.mat'):
        if source.is_file():
            return source
    return None


def source_kind(source: Path) -> str:
    """``'voc'`` for a VOC PNG, ``'sbd'`` for an SBD .mat."""
    return 'sbd' if source.suffix == '.mat' else 'voc'


def read_label_sources(out_dir: Path) -> Dict[str, str]:
    """``{name: 'voc' or 'sbd'}`` of the outputs this tool wrote, from
    :data:`SOURCES_FILE`; empty when there is none (outputs of another converter, or of
    a run cut short: they are converted again)."""
    try:
        record = json.loads((out_dir / SOURCES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def describe_missing(names: List[str], *, total: int) -> str:
    """The message for listed names without a label file."""
    shown = ', '.join(names[:NAMES_SHOWN])
    more = (f' and {len(names) - NAMES_SHOWN} more'
            if len(names) > NAMES_SHOWN else '')
    return (f'{len(names)} of the {total} listed images have no label: neither '
            'VOC2012/SegmentationClass/<name>.png nor SBD cls/<name>.mat '
            f'exists for {shown}{more}')


def read_sbd_mat(path: str) -> np.ndarray:
    """The class indices (``GTcls.Segmentation``) of an SBD .mat file."""
    from scipy.io import loadmat
    try:
        mat = loadmat(path, mat_dtype=True, squeeze_me=True,
                      struct_as_record=False)
        labels = np.asarray(mat['GTcls'].Segmentation)
    except Exception as error:   # truncated, not a .mat, no GTcls, ...
        raise LabelFileError(f'cannot read SBD label file {path}: '
                             f'{type(error).__name__}: {error}') from None
    if labels.ndim != 2:
        raise LabelFileError(f'SBD label file {path} holds a {labels.shape} '
                             'array; expected a 2-D map of class indices')
    return labels.astype(np.uint8)


def convert_one(job: Tuple[str, str, bool]) -> bool:
    """Worker: (source, target, convert) -> whether it wrote ``target``.

    Writes ``target`` from a VOC PNG or an SBD .mat where ``convert`` is set.
    """
    source, target, convert = job
    if not convert:
        return False
    labels = (read_sbd_mat(source) if source.endswith('.mat')
              else read_index_png(source, content=VOC_CONTENT))
    atomic_write_png(target, labels)
    return True


def check_inputs(*, voc: Path, sbd: Path) -> None:
    """Raise :class:`UserInputError` if the layout or scipy is missing."""
    splits = voc / 'ImageSets' / 'Segmentation'
    needed = [splits / 'train.txt', splits / 'val.txt', sbd / 'train.txt',
              sbd / 'val.txt', voc / 'SegmentationClass', sbd / 'cls']
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        raise UserInputError(f'missing {", ".join(missing)}.\nExpected layout: '
                             f'{LAYOUT}.')
    try:
        importlib.import_module('scipy.io')
    except ImportError:
        raise UserInputError('reading SBD needs scipy: `pip install scipy`') \
            from None


def convert_voc_aug(voc_root: Path, sbd_root: Path, *, nproc: int = 1,
                    force: bool = False) -> Tuple[List[str], int, int]:
    """Write the aug labels, ``aug.txt`` and ``trainaug.txt``.

    Args:
        voc_root: the VOCdevkit folder.
        sbd_root: the folder holding SBD's ``benchmark_RELEASE``.
        nproc: worker processes.
        force: convert every name again, also those up to date.

    Returns:
        (the names of trainaug.txt, labels written, labels kept as up to date).

    Raises:
        UserInputError: a missing folder or list, names without a label, a
            label that cannot be read (:class:`LabelFileError`); the message
            names the files.
    """
    voc = voc_root / 'VOC2012'
    sbd = sbd_root / 'benchmark_RELEASE' / 'dataset'
    check_inputs(voc=voc, sbd=sbd)
    splits = voc / 'ImageSets' / 'Segmentation'
    val, train = set(read_list(splits / 'val.txt')), set(read_list(splits / 'train.txt'))
    aug = sorted((set(read_list(sbd / 'train.txt')) | set(read_list(sbd / 'val.txt')))
                 - train - val)
    names = sorted(set(aug) | (train - val))  # trainaug
    everything = names + sorted(val)
    sources = {name: label_source(name, voc=voc, sbd=sbd) for name in everything}
    missing = [name for name in everything if sources[name] is None]
    if missing:
        raise UserInputError(describe_missing(missing, total=len(everything)))
    out_dir = voc / 'SegmentationClassAug'
    ensure_folder(str(out_dir), option='output folder')
    made_from = read_label_sources(out_dir)
    jobs = []
    for name in everything:
        source, target = str(sources[name]), str(out_dir / f'{name}.png')
        kept = (made_from.get(name) == source_kind(sources[name])
                and is_up_to_date(target, [source]))
        jobs.append((source, target, force or not kept))
    written = sum(map_with_progress(convert_one, jobs, nproc, 'VOC aug labels'))
    atomic_write_text(str(out_dir / SOURCES_FILE), json.dumps(
        {name: source_kind(sources[name]) for name in everything}, indent=0) + '\n')
    atomic_write_text(str(splits / 'aug.txt'), '\n'.join(aug) + '\n')
    atomic_write_text(str(splits / 'trainaug.txt'), '\n'.join(names) + '\n')
    return names, written, len(jobs) - written


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('voc_root', type=Path, help='VOCdevkit folder')
    parser.add_argument('sbd_root', type=Path, help='folder holding SBD')
    parser.add_argument('--nproc', type=positive_int, default=4,
                        help='worker processes')
    parser.add_argument('--force', action='store_true',
                        help='convert again also labels that are up to date (by '
                        'default an output is kept if it is no older than its '
                        'VOC PNG or SBD .mat)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        names, written, kept = convert_voc_aug(
            args.voc_root, args.sbd_root, nproc=args.nproc, force=args.force)
    except UserInputError as error:   # LabelFileError included
        return report_error(str(error))
    voc = args.voc_root / 'VOC2012'
    print(f'{written} converted, {kept} already done (labels in '
          f'{voc / "SegmentationClassAug"}); wrote {len(names)} names to '
          f'{voc / "ImageSets" / "Segmentation" / "trainaug.txt"} (train + aug; aug.txt: '
          'the SBD images beyond VOC train and val, as MMSeg writes it).')
    return 0


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('Each label file is written whole (atomically); rerun to convert the rest.'):
        sys.exit(main())
