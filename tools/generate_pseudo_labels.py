"""Pseudo-label a config's target set offline, score SAOT and its ablations, draw overlays.

The same code path as training's ``SAOTPseudoLabelHook``: it fills the config's cache
(``<work_dir>/pseudo_labels``, reused by a later ``tools/train.py`` of the same config),
then labels the target set with every method asked for, prints a per-class IoU table
of the pseudo-labels against the target's ground truth, saves it as JSON, and writes
overlay PNGs (image | pseudo-label | confidence | ground truth)::

    python tools/generate_pseudo_labels.py configs/saot/demo.py
    python tools/generate_pseudo_labels.py configs/saot/gta2cs.py --methods nn saot \\
        --cfg-options train_dataloader.dataset.target.dataset.data_root=/my/cityscapes

Point it at your own folders by config alone: the target is the dataset wrapped by
``PseudoLabelDataset`` in ``train_dataloader`` (its ``seg_map_path``, if any, is the
ground truth used here for scoring only), the source is the hook's ``source``.
``--split val`` scores the methods on ``val_dataloader``'s images and labels instead
(read through the labelling pipeline; the training cache is left alone). The JSON
records what was scored (``split``, and the ``dataset`` type, ``data_root`` and
``img_path``), which ``tools/summarize_uda.py`` checks before comparing columns.
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

from mmseg_saot.utils.arg_types import device_option, non_negative_float, non_negative_int
from mmseg_saot.utils.atomic import atomic_write_text
from mmseg_saot.utils.cli import (CfgOptionsAction, check_data_or_exit, ensure_folder_or_exit,
                                  interrupt_exits, user_errors_exit)
from mmseg_saot.utils.run_config import load_run_config


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmseg_saot.models.labelers import METHODS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config with a SAOTPseudoLabelHook')
    parser.add_argument('--methods', nargs='+', default=list(METHODS), choices=list(METHODS),
                        help='methods to score (default: the whole ladder)')
    parser.add_argument('--work-dir', help='the run folder (default as tools/train.py)')
    parser.add_argument('--out-dir', help='table, JSON and overlays '
                        '(default: <work_dir>/pseudo_label_eval, or '
                        '<work_dir>/pseudo_label_eval_val with --split val)')
    parser.add_argument('--num-overlays', type=non_negative_int, default=8,
                        help='overlay PNGs per method (0: none)')
    parser.add_argument('--no-cache', action='store_true',
                        help='score only; do not write the training cache')
    parser.add_argument('--split', choices=['train', 'val'], default='train',
                        help='score the target train set (default) or the val set '
                        '(implies --no-cache)')
    parser.add_argument('--device', default=None, type=device_option,
                        help='cpu or cuda[:N] (default: cuda if any)')
    parser.add_argument('--feature-memo-gb', type=non_negative_float, default=4.0,
                        help='memory for features kept between the labelling and the '
                        'comparison pass (beyond it images are recomputed)')
    parser.add_argument('--oracle', action='store_true',
                        help='also score patch_oracle: the ground truth\'s own majority label '
                        'per backbone patch, upsampled like the methods\' labels (the '
                        'ceiling of patch-level transfer at the labelling resolution)')
    parser.add_argument('--feature-cache', metavar='DIR',
                        help='also keep the frozen features on disk under DIR and reuse them '
                        'in later runs (a labeller sweep, another split of the same images, '
                        'train.py); one subfolder per backbone, weights and preprocessing; '
                        'fp32, 0.8 MB per ViT-S/14 image at 448x224, 4.2 MB at 1036x518 '
                        '(default: the hook\'s feature_store_dir, if any)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir)
    check_data_or_exit(cfg, ('train', 'val') if args.split == 'val' else ('train',))
    with user_errors_exit(cfg):
        return run(cfg, args)


def run(cfg, args: argparse.Namespace) -> dict:
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmseg.registry import DATASETS, HOOKS, MODELS

    import mmseg_saot  # noqa: F401  (registers the plugin)
    from mmseg_saot.datasets.class_counts import class_count_problems
    from mmseg_saot.engine.hooks import find_pseudo_label_dataset, pseudo_label_hook_configs
    from mmseg_saot.engine.pseudo_labels.comparison import (compare_methods,
                                                            missing_ground_truth,
                                                            set_aside_earlier_outputs)
    from mmseg_saot.engine.pseudo_labels.feature_store import FeatureStore
    from mmseg_saot.engine.pseudo_labels.features import FeatureMemo, PseudoLabelInputError
    from mmseg_saot.engine.pseudo_labels.scoring import format_table
    from mmseg_saot.utils.errors import ConfigError

    init_default_scope(cfg.get('default_scope', 'mmseg'))
    hooks = pseudo_label_hook_configs(cfg.get('custom_hooks', []))
    if not hooks:
        raise PseudoLabelInputError(f'{args.config} has no SAOTPseudoLabelHook in custom_hooks; '
                                    'see configs/saot/gta2cs.py.')
    # as tools/train.py: before any labelling, which a mismatch would lose to a crash
    # (IndexError in the scoring) or to a cache moved aside by the next run
    problems = class_count_problems(cfg, ('train', 'val') if args.split == 'val' else ('train',))
    if problems:
        raise ConfigError(f'{args.config}: {"; ".join(problems)} (from the config or '
                          '--cfg-options).')
    hook = HOOKS.build(hooks[0])
    dataset = find_pseudo_label_dataset(DATASETS.build(cfg.train_dataloader.dataset))
    if args.split == 'val':
        if not (cfg.get('val_dataloader') or {}).get('dataset'):
            raise PseudoLabelInputError(
                f'--split val: {args.config} has no val_dataloader with a dataset to score '
                'on; add one (see configs/saot/gta2cs.py) or score the train split (drop '
                '--split val).')
        dataset = _val_as_target(cfg, dataset)
        if not dataset.metainfo.get('classes'):
            raise PseudoLabelInputError(
                f'--split val: val_dataloader.dataset of {args.config} names no classes; '
                "give it the head's classes in metainfo=dict(classes=...) (or use a "
                'dataset type that has them, e.g. CityscapesDataset).')
        args.no_cache = True
    if args.no_cache:
        STOPPED['message'] = ('Nothing was written to the pseudo-label cache (--no-cache or '
                              '--split val leave it alone); the table is written at the end.')
    # before the model is built (minutes for a large ViT): whether there is truth to score
    unscored = missing_ground_truth(dataset)
    if unscored and (args.no_cache or args.split == 'val'):
        raise PseudoLabelInputError(
            f'{unscored}: nothing to score the methods against. Give the target set its '
            'label maps (data_prefix.seg_map_path of the dataset that PseudoLabelDataset '
            'wraps), or run without --split val / --no-cache to only write the pseudo-labels.')
    # output folders too: a path that cannot be a folder is named before the build
    out_dir = args.out_dir or osp.join(
        cfg.work_dir, 'pseudo_label_eval' + ('_val' if args.split == 'val' else ''))
    ensure_folder_or_exit(out_dir, '--out-dir' if args.out_dir else 'the output folder')
    if args.feature_cache:
        ensure_folder_or_exit(args.feature_cache, '--feature-cache')
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    # seeded as the Runner of tools/train.py seeds before it builds the model, so a
    # backbone without pretrained weights is the same here and there (one cache for both)
    randomness = dict(cfg.get('randomness') or {})  # seed, deterministic, diff_rank_seed
    if randomness.get('seed') is not None:
        set_random_seed(**randomness)
    model = MODELS.build(cfg.model).to(device).eval()
    hook.check_model(model)  # also where the hook does not run (--no-cache, --split val)
    main_method = hook.labeler_cfg.get('method', 'saot')
    # each image through the backbone once for both passes, within a memory budget
    store_dir = args.feature_cache or hook.feature_store_dir
    store = FeatureStore(store_dir, model) if store_dir else None
    memo = FeatureMemo(int(args.feature_memo_gb * (1 << 30)), store=store)
    if not args.no_cache:  # (the metric trains with autograd: no global no_grad)
        hook.run(model, dataset, memo=memo)
    if unscored:
        print(f'\n{unscored}: the pseudo-labels of the {len(dataset)} target images are in '
              f'{dataset.pseudo_label_dir}, not scored.')
        return dict(config=args.config, **scored_on(dataset, args.split), methods={})
    earlier = set_aside_earlier_outputs(out_dir)
    if earlier:
        print(f'the earlier table and overlays in {out_dir} are moved to {earlier}')
    results = compare_methods(model, hook, dataset, args.methods, out_dir=out_dir,
                              num_overlays=args.num_overlays, memo=memo,
                              main_method=None if args.no_cache else main_method,
                              oracle=args.oracle)
    table = format_table(results, dataset.metainfo['classes'])
    print(f'\nPseudo-label IoU (%) on {len(dataset)} target images, per method:\n{table}')
    _print_ratio(results)
    if main_method in results and 'cache_mismatches' in results[main_method]:
        print(f'cache check: {results[main_method]["cache_mismatches"]} pixels of the cached '
              f'{main_method} labels differ from this pass')
    report = dict(config=args.config, **scored_on(dataset, args.split), methods=results)
    atomic_write_text(osp.join(out_dir, 'pseudo_label_miou.json'),
                      json.dumps(report, indent=2) + '\n')
    atomic_write_text(osp.join(out_dir, 'pseudo_label_miou.txt'), table + '\n')
    if store is not None:
        print(f'feature cache {store.folder}: {store.hits} images read, {store.misses} computed')
    overlays = f'; overlays in {osp.join(out_dir, "overlays")}' if args.num_overlays else ''
    print(f'table and JSON in {out_dir}{overlays}')
    return report


def scored_on(dataset, split: str) -> dict:
    """The report's record of the images scored: ``num_images``, ``split`` (train or
    val) and ``dataset`` (:func:`~mmseg_saot.datasets.identity.dataset_identity` of the
    set the :class:`PseudoLabelDataset` ``dataset`` wraps), so ``tools/summarize_uda.py``
    can tell columns of different splits or images apart.
    """
    from mmseg_saot.datasets.identity import dataset_identity
    return dict(num_images=len(dataset), split=split,
                dataset=dataset_identity(dataset.target))


def _val_as_target(cfg, train_target):
    """A PseudoLabelDataset over val_dataloader's dataset, read like the train target.

    The view gives the comparison its keys and ground-truth paths; its cache folder
    (``<train cache>.val-unused``) is never created or read: ``--split val`` implies
    ``--no-cache``, and the cache check of the main method is off then.
    """
    from mmseg_saot.datasets import PseudoLabelDataset
    from mmseg_saot.engine.pseudo_labels.features import PseudoLabelInputError
    pipeline = getattr(train_target.target, 'pipeline', None)
    if pipeline is None:
        raise PseudoLabelInputError(
            f'--split val reads the val images with the labelling pipeline of the train '
            f'target, and that target is a {type(train_target.target).__name__}, which '
            'wraps other datasets and has none of its own; score the train split (drop '
            '--split val), or label a plain dataset.')
    val_cfg = dict(cfg.val_dataloader.dataset)
    val_cfg['pipeline'] = pipeline.transforms  # the labelling pipeline
    return PseudoLabelDataset(val_cfg, train_target.pseudo_label_dir + '.val-unused')


def _print_ratio(results: dict) -> None:
    from mmseg_saot.engine.pseudo_labels.oracle import PATCH_ORACLE
    if 'nn' in results and 'saot' in results and results['nn']['miou'] > 0:
        others = [r['miou'] for m, r in results.items() if m not in ('saot', PATCH_ORACLE)]
        print(f'saot / nn = {results["saot"]["miou"] / results["nn"]["miou"]:.2f}x; '
              f'saot - best other = {results["saot"]["miou"] - max(others):+.1f} mIoU')
    if PATCH_ORACLE in results and results[PATCH_ORACLE]['miou'] > 0:
        ceiling = results[PATCH_ORACLE]['miou']
        shares = ', '.join(f'{m} {100 * r["miou"] / ceiling:.0f} %' for m, r in results.items()
                           if m != PATCH_ORACLE)
        print(f'{PATCH_ORACLE} (the true patch labels, upsampled alike) = {ceiling:.1f} mIoU; '
              f'share of it: {shares}')


# What an interrupt says (see interrupt_exits); run() changes it where no cache is filled.
STOPPED = {'message': 'Pseudo-labels already written to the cache are kept; the same '
                      'command completes it.'}


if __name__ == '__main__':
    with interrupt_exits(lambda: STOPPED['message']):
        sys.exit(0 if main() is not None else 1)
