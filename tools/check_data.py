"""Read every image and label map of a config's datasets and list what is unusable.

    python tools/check_data.py configs/saot/gta2cs.py                  # every split
    python tools/check_data.py configs/saot/gta2cs.py --splits val --nproc 8

For the train split this covers the source and target sets of the training data and
the pseudo-labeller's source bank; for val and test their datasets. Each sample is
read as MMSeg's loading transforms read it, and listed if its image or label map
cannot be decoded, the label map's size differs from the image's, the label map has
colour channels or 16-bit values, or its values are neither class ids nor the ignore
index (see ``mmseg_saot/datasets/integrity.py``). Exit code 0 when every sample is
usable, 1 when some are not (their files are listed, and all of them are written to
``--out`` as JSON), 2 for a bad command line or config. Ctrl-C lists the problems of
the samples read so far (and writes them to ``--out``, the interrupted dataset with
the number it read) and exits with 130.
"""
import argparse
import functools
import json
import multiprocessing
import os.path as osp
import sys
from typing import Dict, Iterator, List, Optional, Tuple

import mmseg_saot  # noqa: F401  (mends the stack, registers the plugin)
from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar
from mmseg.registry import DATASETS

from mmseg_saot.datasets.integrity import check_pair, decode_backends
from mmseg_saot.datasets.layout import SPLITS, dataset_roots, leaf_dataset_keys, loads_labels
from mmseg_saot.utils.arg_types import output_file, positive_int
from mmseg_saot.utils.cli import (CfgOptionsAction, check_data_or_exit, exit_with,
                                  interrupt_exits, user_errors_exit)
from mmseg_saot.utils.parallel import leave_interrupts_to_parent
from mmseg_saot.utils.run_config import load_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='the experiment config')
    parser.add_argument('--splits', nargs='+', choices=SPLITS, default=list(SPLITS),
                        help='dataloaders to check (default: all)')
    parser.add_argument('--nproc', type=positive_int, default=1,
                        help='processes reading files')
    parser.add_argument('--max-listed', type=positive_int, default=20,
                        help='problems printed per dataset (--out has them all)')
    parser.add_argument('--out', type=output_file, help='JSON report of every problem')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def dataset_configs(cfg, splits) -> Iterator[Tuple[str, str, dict]]:
    """``(split, config key, leaf dataset config)`` for each distinct dataset of
    ``splits`` (the first config key that names it)."""
    seen = set()
    for split, root_key, root in dataset_roots(cfg, splits):
        for key, leaf in leaf_dataset_keys(root, root_key):
            identity = json.dumps(dict({k: v for k, v in leaf.items() if k != 'pipeline'},
                                       **decode_backends(leaf)), sort_keys=True, default=str)
            if identity not in seen:
                seen.add(identity)
                yield split, key, leaf


def check_dataset(split: str, key: str, leaf: dict,
                  nproc: int) -> Tuple[str, int, List[str], int]:
    """``(title, number of samples, problems, samples read)`` of the dataset config
    ``key`` of ``split``; the title names the dataset, its root and its config key
    (datasets of one type and root, such as VOC's train and aug lists, differ only
    there). Ctrl-C or SIGTERM stops the reading: fewer samples read than there are."""
    dataset = DATASETS.build(dict(leaf, pipeline=[]))
    name = (f'{type(dataset).__name__} {getattr(dataset, "data_root", "") or ""}'.strip()
            + f' ({key})')
    # labels that nothing reads (a PseudoLabelDataset's targets, a format_only test set)
    # are checked where they are, and their absence is no problem
    label_folder = (getattr(dataset, 'data_prefix', None) or {}).get('seg_map_path')
    labelled = loads_labels(leaf) or bool(label_folder and osp.isdir(label_folder))
    items = [(info['img_path'], info.get('seg_map_path') if labelled else None)
             for info in (dataset.get_data_info(i) for i in range(len(dataset)))]
    check = functools.partial(
        check_pair, num_classes=len(dataset.metainfo['classes']),
        ignore_index=getattr(dataset, 'ignore_index', 255),
        reduce_zero_label=bool(getattr(dataset, 'reduce_zero_label', False)),
        label_map=getattr(dataset, 'label_map', None), **decode_backends(leaf))
    print(f'[{split}: {name}] reading {len(items)} samples'
          + ('' if labelled else ' (images only: no label folder, and none is read)'),
          flush=True)
    progress = ProgressBar(len(items))
    problems = []
    read = 0
    if nproc == 1:
        results = map(check, items)
    else:
        pool = multiprocessing.Pool(nproc, initializer=leave_interrupts_to_parent)
        results = pool.imap(check, items, chunksize=8)
    try:
        for found in results:
            problems += found
            read += 1
            progress.update()
    except KeyboardInterrupt:  # keep what was found: main reports it
        pass
    finally:
        if nproc > 1:
            pool.terminate()
    print()
    return name, len(items), problems, read


def _count(number: int, noun: str) -> str:
    return f'{number} {noun}{"" if number == 1 else "s"}'


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    check_data_or_exit(cfg, args.splits)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    report: Dict[str, dict] = {}
    interrupted = False
    with user_errors_exit(cfg):
        try:
            for split, key, leaf in dataset_configs(cfg, args.splits):
                name, count, problems, read = check_dataset(split, key, leaf, args.nproc)
                report[f'{split}: {name}'] = dict(samples=count, problems=problems)
                if read < count:
                    report[f'{split}: {name}']['read'] = read
                    interrupted = True
                    break
        except KeyboardInterrupt:  # between two datasets: report the ones read
            interrupted = True
    if interrupted and not report:
        raise KeyboardInterrupt
    without = [split for split in args.splits if next(dataset_roots(cfg, [split]), None) is None]
    if not report and not interrupted:
        exit_with(f'{args.config} has no dataloader with a dataset for --splits '
                  f'{" ".join(args.splits)}: nothing was checked; pick splits it has.')
    for split in [] if interrupted else without:
        print(f'[{split}] not checked: {args.config} has no {split}_dataloader with a dataset')
    total = 0
    for title, entry in report.items():
        problems = entry['problems']
        total += len(problems)
        read = '' if 'read' not in entry else f'{entry["read"]} read (interrupted) of '
        print(f'[{title}] {read}{entry["samples"]} samples, {_count(len(problems), "problem")}')
        for line in problems[:args.max_listed]:
            print(f'  {line}')
        if len(problems) > args.max_listed:
            print(f'  ... {len(problems) - args.max_listed} more'
                  + (f' (all in {args.out})' if args.out else ' (--out FILE lists all)'))
    if args.out:
        from mmseg_saot.utils.atomic import atomic_write_text
        atomic_write_text(args.out, json.dumps(report, indent=1) + '\n')
    if interrupted:
        STOPPED['message'] = ('The problems of the samples read so far are listed above'
                              + (f' and in {args.out}' if args.out else '') +
                              '; the datasets after the interrupted one were not read.')
        raise KeyboardInterrupt
    print('every sample is usable' if not total else
          f'{_count(total, "problem")}: fix or remove those files (or drop them from the '
          'split list)')
    return 1 if total else 0


# What the stop message says (see interrupt_exits); main sets it once it has a report.
STOPPED = {'message': ''}


if __name__ == '__main__':
    with interrupt_exits(lambda: STOPPED['message']):
        sys.exit(main())
