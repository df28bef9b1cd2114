"""Generate the embedded demo data: synthetic GTA5-like and Cityscapes-like
street scenes (see ``mmseg_saot/datasets/synthetic_streets/``).

Layout written under ``--out`` (default ``data/demo``)::

    gta5/images/00000.png                 source domain ("game" style)
    gta5/labels/00000.png                 Cityscapes label ids, paletted PNG
                                          (run tools/dataset_converters/gta5.py
                                          on data/demo/gta5 for train ids)
    cityscapes/leftImg8bit/{train,val}/demo/<name>_leftImg8bit.png
    cityscapes/gtFine/{train,val}/demo/<name>_gtFine_labelIds.png
    cityscapes/gtFine/{train,val}/demo/<name>_gtFine_labelTrainIds.png
                                          <name>: demo_000000_000019, ...
    DONE.json                             generator version and arguments

A second run with the same arguments and generator version does nothing; a
different one regenerates. ``DONE.json`` is written last, so an interrupted
run is redone from scratch. Usage::

    python tools/dataset_converters/make_demo_data.py [--out data/demo]
        [--num-source 200] [--num-target-train 150] [--num-target-val 50]
        [--seed 0] [--nproc 2] [--width 448 --height 224]
        [--target-shift 1.0]

``--target-shift`` sets how far the target style is from the source style
(``blend_styles``: 0 = the source style, 1 = the "real" preset, the default);
``tools/benchmark_shift.py`` uses it to score the labellers as the shift grows.
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from mmseg_saot.datasets import cityscapes_labels as labels
from mmseg_saot.datasets import synthetic_streets as streets
from mmseg_saot.utils.arg_types import non_negative_int, positive_int
from mmseg_saot.utils.atomic import atomic_write_text
from mmseg_saot.utils.errors import UserInputError
from mmseg_saot.utils.parallel import map_with_progress
from mmseg_saot.utils.paths import ensure_folder

STAMP = 'DONE.json'
IN_PROGRESS = 'INCOMPLETE'
DOMAINS = {'source': 0, 'target': 1}
SPLITS = {'train': 0, 'val': 1}
CITY = 'demo'

# domain, split, index, seed, out, width, height, target shift
Job = Tuple[str, str, int, int, str, int, int, float]


def scene_seed(seed: int, domain: str, split: str, index: int) -> List[int]:
    """The generator seed of one image: independent streams per domain,
    split and index."""
    return [seed, DOMAINS[domain], SPLITS[split], index]


def output_paths(out: Path, domain: str, split: str,
                 index: int) -> Dict[str, Path]:
    """Where one image and its labels go."""
    if domain == 'source':
        name = f'{index:05d}.png'
        return dict(image=out / 'gta5' / 'images' / name,
                    label_ids=out / 'gta5' / 'labels' / name)
    stem = f'{CITY}_{index:06d}_000019'
    gt = out / 'cityscapes' / 'gtFine' / split / CITY
    return dict(
        image=out / 'cityscapes' / 'leftImg8bit' / split / CITY /
        f'{stem}_leftImg8bit.png',
        label_ids=gt / f'{stem}_gtFine_labelIds.png',
        train_ids=gt / f'{stem}_gtFine_labelTrainIds.png')


def _label_palette() -> List[int]:
    """The Cityscapes colour of each label id, as a 768-entry PNG palette."""
    palette = np.zeros((256, 3), np.uint8)
    for _, label_id, _, color in labels.LABELS:
        if label_id >= 0:
            palette[label_id] = color
    return palette.ravel().tolist()


def write_label_ids(path: Path, label_ids: np.ndarray, paletted: bool) -> None:
    """Label ids as a paletted PNG (GTA5 style) or a grey one (Cityscapes)."""
    if paletted:
        try:
            from PIL import Image
        except ImportError:
            paletted = False
    if paletted:
        image = Image.fromarray(label_ids)   # 'L'; a palette makes it 'P'
        image.putpalette(_label_palette())
        image.save(path)
    elif not cv2.imwrite(str(path), label_ids):
        raise OSError(f'cannot write {path}')


def domain_style(domain: str, target_shift: float) -> streets.DomainStyle:
    """The source preset, or the target preset moved ``target_shift`` of the
    way from the source preset (1: the target preset itself)."""
    if domain == 'source':
        return streets.SOURCE_STYLE
    return streets.blend_styles(streets.SOURCE_STYLE, streets.TARGET_STYLE,
                                target_shift)


def make_one(job: Job) -> str:
    """Render one scene and write its image and labels."""
    domain, split, index, seed, out, width, height, shift = job
    image, label_ids = streets.render_scene(
        scene_seed(seed, domain, split, index), domain_style(domain, shift),
        width=width, height=height)
    paths = output_paths(Path(out), domain, split, index)
    if not cv2.imwrite(str(paths['image']),
                       cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f'cannot write {paths["image"]}')
    write_label_ids(paths['label_ids'], label_ids,
                    paletted=domain == 'source')
    if 'train_ids' in paths:
        cv2.imwrite(str(paths['train_ids']),
                    labels.label_ids_to_train_ids(label_ids))
    return domain


def stamp_config(args) -> Dict:
    """What DONE.json must match for a run to be a no-op (the default
    target shift is left out, so trees stamped before it existed still
    match)."""
    config = dict(generator='mmseg_saot.datasets.synthetic_streets',
                  version=streets.GENERATOR_VERSION,
                  width=args.width, height=args.height,
                  num_source=args.num_source,
                  num_target_train=args.num_target_train,
                  num_target_val=args.num_target_val, seed=args.seed)
    if args.target_shift != 1.0:
        config['target_shift'] = args.target_shift
    return config


def read_stamp(out: Path) -> Optional[Dict]:
    try:
        with open(out / STAMP) as f:
            return json.load(f).get('config')
    except (OSError, ValueError, AttributeError):
        return None


class RefuseError(Exception):
    """The output folder holds data this tool did not write."""


def clear_output(out: Path) -> None:
    """Remove a previous demo tree, but only one this tool wrote."""
    owned = (out / STAMP).exists() or (out / IN_PROGRESS).exists()
    for sub in ('gta5', 'cityscapes'):
        folder = out / sub
        if folder.exists() and any(folder.iterdir()) and not owned:
            raise RefuseError(
                f'{folder} exists and was not written by make_demo_data '
                f'(no {out / STAMP}); choose another --out or remove it')
    (out / STAMP).unlink(missing_ok=True)
    (out / IN_PROGRESS).touch()
    for sub in ('gta5', 'cityscapes'):
        shutil.rmtree(out / sub, ignore_errors=True)


def make_jobs(args, out: Path) -> List[Job]:
    rendering = (args.width, args.height, args.target_shift)
    jobs = [('source', 'train', i, args.seed, str(out), *rendering)
            for i in range(args.num_source)]
    jobs += [('target', 'train', i, args.seed, str(out), *rendering)
             for i in range(args.num_target_train)]
    jobs += [('target', 'val', i, args.seed, str(out), *rendering)
             for i in range(args.num_target_val)]
    folders = {path.parent for job in jobs
               for path in output_paths(out, *job[:3]).values()}
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return jobs


def generate(args) -> Tuple[bool, float]:
    """Write the demo tree unless DONE.json says it is there.

    Returns:
        (whether anything was generated, seconds taken).

    Raises:
        UserInputError: ``--out`` is a file or cannot be created.
        RefuseError: ``--out`` holds data this tool did not write.
    """
    out = Path(args.out)
    config = stamp_config(args)
    if read_stamp(out) == config:
        return False, 0.0
    ensure_folder(str(out), option='--out')
    clear_output(out)
    start = time.perf_counter()
    jobs = make_jobs(args, out)
    for _ in map_with_progress(make_one, jobs, args.nproc, 'demo scenes',
                               chunksize=4, initializer=cv2.setNumThreads,
                               initargs=(1,)):   # one thread per process
        pass
    seconds = time.perf_counter() - start
    stamp = dict(config=config, seconds=round(seconds, 1),
                 source=str(out / 'gta5'), target=str(out / 'cityscapes'))
    atomic_write_text(str(out / STAMP), json.dumps(stamp, indent=2) + '\n')
    (out / IN_PROGRESS).unlink(missing_ok=True)
    return True, seconds


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate the synthetic two-domain street-scene demo '
        'data in the GTA5 and Cityscapes layouts.')
    parser.add_argument('--out', default='data/demo', help='output folder')
    parser.add_argument('--num-source', type=non_negative_int, default=200,
                        help='source ("game", GTA5 layout) images')
    parser.add_argument('--num-target-train', type=non_negative_int, default=150,
                        help='target ("real", Cityscapes layout) train images')
    parser.add_argument('--num-target-val', type=non_negative_int, default=50,
                        help='target val images')
    parser.add_argument('--seed', type=non_negative_int, default=0)
    parser.add_argument('--width', type=int, default=streets.WIDTH,
                        help='image width (2048 and --height 1024: Cityscapes '
                        'resolution, for full-size smoke runs)')
    parser.add_argument('--height', type=int, default=streets.HEIGHT)
    parser.add_argument('--nproc', type=positive_int, default=2,
                        help='worker processes')
    parser.add_argument('--target-shift', type=float, default=1.0,
                        help='how far the target style is from the source '
                        'style, in [0, 1]: 0 = the source style, 1 = the '
                        '"real" preset (default)')
    args = parser.parse_args(argv)
    if not 0.0 <= args.target_shift <= 1.0:
        parser.error(f'--target-shift must be in [0, 1], got '
                     f'{args.target_shift}')
    if args.width < 64 or args.height < 64:
        parser.error('--width and --height must be >= 64')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        generated, seconds = generate(args)
    except (RefuseError, UserInputError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    if not generated:
        print(f'demo data in {args.out} is up to date (generator '
              f'{streets.GENERATOR_VERSION}, same arguments): nothing to do. '
              f'Delete the folder {args.out} to regenerate.')
        return 0
    total = args.num_source + args.num_target_train + args.num_target_val
    print(f'wrote {total} scenes to {args.out} in {seconds:.1f} s: '
          f'{args.num_source} source (gta5/), {args.num_target_train} + '
          f'{args.num_target_val} target train + val (cityscapes/). Next: '
          f'python tools/dataset_converters/gta5.py '
          f'{Path(args.out) / "gta5"}')
    return 0


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('The data folder is marked incomplete; a rerun generates it again.'):
        sys.exit(main())
