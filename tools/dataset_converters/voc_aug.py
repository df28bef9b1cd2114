"""Build PASCAL VOC 2012's augmented training set (SBD) for MMSeg.

Usage::

    python tools/dataset_converters/voc_aug.py data/VOCdevkit data/VOCdevkit/VOCaug

Reads SBD's ``benchmark_RELEASE/dataset/cls/*.mat`` and VOC's own
``SegmentationClass/*.png``, writes ``VOC2012/SegmentationClassAug/*.png``
(class indices, 255 = boundary) and ``ImageSets/Segmentation/aug.txt``:
SBD train + val and VOC train, minus VOC val (10,582 images).
"""
import argparse
import sys
from functools import partial
from multiprocessing import Pool
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image
from tqdm import tqdm

LAYOUT = ('VOC_ROOT/VOC2012/{JPEGImages,SegmentationClass,ImageSets/'
          'Segmentation/{train,val}.txt} and SBD_ROOT/benchmark_RELEASE/'
          'dataset/{cls/*.mat,train.txt,val.txt}')


def read_list(path: Path) -> List[str]:
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip()]


def convert_one(name: str, voc: Path, sbd: Path, out_dir: Path) -> None:
    """Write ``out_dir/<name>.png`` from VOC's PNG or SBD's .mat."""
    target = out_dir / f'{name}.png'
    voc_png = voc / 'SegmentationClass' / f'{name}.png'
    if voc_png.is_file():
        labels = np.array(Image.open(voc_png))  # paletted: indices
    else:
        from scipy.io import loadmat
        mat = loadmat(sbd / 'cls' / f'{name}.mat', mat_dtype=True,
                      squeeze_me=True, struct_as_record=False)
        labels = mat['GTcls'].Segmentation.astype(np.uint8)
    Image.fromarray(labels.astype(np.uint8)).save(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('voc_root', type=Path, help='VOCdevkit folder')
    parser.add_argument('sbd_root', type=Path, help='folder holding SBD')
    parser.add_argument('--nproc', type=int, default=4)
    args = parser.parse_args()
    voc = args.voc_root / 'VOC2012'
    sbd = args.sbd_root / 'benchmark_RELEASE' / 'dataset'
    splits = voc / 'ImageSets' / 'Segmentation'
    needed = [splits / 'train.txt', splits / 'val.txt', sbd / 'train.txt',
              sbd / 'val.txt', voc / 'SegmentationClass', sbd / 'cls']
    missing = [str(path) for path in needed if not path.exists()]
    if missing:
        print(f'error: missing {", ".join(missing)}.\nExpected layout: '
              f'{LAYOUT}.', file=sys.stderr)
        return 2
    try:
        import scipy.io  # noqa: F401
    except ImportError:
        print('error: reading SBD needs scipy: `pip install scipy`',
              file=sys.stderr)
        return 2
    val = set(read_list(splits / 'val.txt'))
    names = sorted((set(read_list(sbd / 'train.txt'))
                    | set(read_list(sbd / 'val.txt'))
                    | set(read_list(splits / 'train.txt'))) - val)
    out_dir = voc / 'SegmentationClassAug'
    out_dir.mkdir(exist_ok=True)
    work = partial(convert_one, voc=voc, sbd=sbd, out_dir=out_dir)
    with Pool(args.nproc) as pool:
        for _ in tqdm(pool.imap_unordered(work, names + sorted(val)),
                      total=len(names) + len(val), desc='VOC aug labels'):
            pass
    (splits / 'aug.txt').write_text('\n'.join(names) + '\n')
    print(f'Wrote {len(names)} names to {splits / "aug.txt"} and labels to '
          f'{out_dir}.')
    return 0


if __name__ == '__main__':
    sys.exit(main())
