"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT``.

The interface of MMSegmentation's tools/test.py: prints per-class IoU and
mIoU on the config's test split.
"""
import argparse
import glob
import logging
import os
import os.path as osp
import sys
from typing import List, Optional

import mmseg_saot  # noqa: F401  (mends the stack, registers the plugin)
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.registry import METRICS, MODELS, RUNNERS

from mmseg_saot.datasets.class_counts import dataset_classes
from mmseg_saot.datasets.layout import leaf_dataset_keys
from mmseg_saot.models.backbones.dinov2 import check_segmentor_parts
from mmseg_saot.utils.arg_types import non_negative_float
from mmseg_saot.utils.build_errors import component_config_problem, takes_option
from mmseg_saot.utils.checkpoint_checks import (check_checkpoint_fits_or_exit,
                                                check_checkpoint_or_exit,
                                                other_classes_problem,
                                                untrained_teacher_problem)
from mmseg_saot.utils.cli import (CfgOptionsAction, check_data_or_exit, ensure_folder_or_exit,
                                  exit_with, interrupt_exits, user_errors_exit)
from mmseg_saot.utils.paths import move_aside
from mmseg_saot.utils.run_config import (config_dump_path, file_kept, load_run_config,
                                        save_config_with_templates)
from mmseg_saot.utils.run_options import check_run_options, missing_test_loop_parts


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a segmentor')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where metrics are written')
    parser.add_argument('--out', help='folder to save predicted label maps')
    parser.add_argument('--show-dir', help='folder to save painted images')
    parser.add_argument('--show', action='store_true',
                        help='show painted predictions in a window (needs a display)')
    parser.add_argument('--wait-time', type=non_negative_float, default=2.0,
                        help='seconds each image is shown with --show (default 2)')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (config tta_pipeline)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='override config settings (key=value)')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def paint_predictions(cfg, show_dir: Optional[str], show: bool, wait_time: float) -> None:
    """Let the visualization hook paint every test image: into ``show_dir`` and/or a
    window (``show``, ``wait_time`` seconds each), as MMSegmentation's test.py does."""
    if show and sys.platform.startswith('linux') and not (
            os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
        exit_with('--show needs a display and this session has none (DISPLAY is not set); '
                  'save the painted images with --show-dir DIR instead.')
    hook = (cfg.get('default_hooks') or {}).get('visualization')
    if not hook:
        exit_with('--show/--show-dir: the config has no default_hooks.visualization to paint '
                  "with; add dict(type='SegVisualizationHook') (as in MMSegmentation's "
                  'default_runtime.py) or test without them.')
    hook.draw = True
    hook.interval = 1
    if show:
        hook.show = True
        hook.wait_time = wait_time
    if show_dir:
        ensure_folder_or_exit(show_dir, '--show-dir')
        cfg.visualizer.save_dir = show_dir
    if cfg.get('launcher', 'none') != 'none':
        print_log('--show/--show-dir with several processes: MMEngine draws on rank 0 only, '
                  'so only its share of the test images is painted; paint with one '
                  'process (tools/test.py without a launcher) to get them all.',
                  logger='current', level=logging.WARNING)


def save_predictions(cfg, out: str) -> None:
    """Let the test evaluators write their predicted label maps into ``out`` (``--out``).

    One evaluator writes into ``out`` itself; several (``test_evaluator`` a list) each
    into ``out/<type>`` (``<type>.2``, ... for a type given twice), since they write the
    same file names. Label maps of an earlier test there are moved into
    ``out/earlier-<time>/`` first, by rank 0 alone, so that nothing is overwritten or
    mixed.
    """
    evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [
        cfg.test_evaluator]
    writers = [e for e in evaluators if takes_option(e, METRICS, 'output_dir')]
    if not writers:
        exit_with(f'--out: no test evaluator of this config writes label maps (test_evaluator: '
                  f'{", ".join(str(e.get("type")) for e in evaluators)}); add an IoUMetric '
                  'or test without --out.')
    for evaluator, folder in zip(writers, prediction_folders(out, writers)):
        ensure_folder_or_exit(folder, '--out')
        earlier = None
        if int(os.environ.get('RANK', '0')) == 0:  # one process moves them (dist_test.sh)
            earlier = move_aside(folder, sorted(
                osp.basename(path) for path in glob.glob(osp.join(glob.escape(folder),
                                                                  '*.png'))))
        if earlier:
            print_log(f'--out: the label maps of an earlier test in {folder} are moved to '
                      f'{earlier}.', logger='current', level=logging.WARNING)
        evaluator['output_dir'] = folder
        if takes_option(evaluator, METRICS, 'keep_results'):  # CityscapesMetric
            evaluator['keep_results'] = True


def prediction_folders(out: str, writers: list) -> List[str]:
    """``[out]`` for one evaluator; ``out/<type>`` (``.2``, ... on repeats) for several."""
    if len(writers) == 1:
        return [out]
    folders: List[str] = []
    for evaluator in writers:
        obj_type = evaluator.get('type')
        name = obj_type if isinstance(obj_type, str) else getattr(obj_type, '__name__', 'metric')
        folder, repeat = osp.join(out, name), 1
        while folder in folders:
            repeat += 1
            folder = osp.join(out, f'{name}.{repeat}')
        folders.append(folder)
    return folders


def drop_training_parts(cfg) -> None:
    """Testing builds no training loop: without one, nothing can build the training
    dataloader (MMSeg's visualization hook reads ``runner.iter``, which would build the
    whole training set, sampler included, just to number the painted images)."""
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg[key] = None


def main() -> None:
    args = parse_args()
    checkpoint = check_checkpoint_or_exit(args.checkpoint, 'CHECKPOINT')
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir,
                          args.launcher)
    cfg.load_from = args.checkpoint
    problem = missing_test_loop_parts(cfg)  # before --out and --tta reach into them
    if problem:
        exit_with(f'{args.config}: {problem} (from the config or --cfg-options).')
    if args.out:
        save_predictions(cfg, args.out)
    if args.show or args.show_dir:
        paint_predictions(cfg, args.show_dir, args.show, args.wait_time)
    if args.tta:
        missing = [key for key in ('tta_pipeline', 'tta_model') if not cfg.get(key)]
        if missing:
            exit_with(f'--tta: {args.config} defines no {" and no ".join(missing)}. Add '
                      f'{"it" if len(missing) == 1 else "them"} to the config (as in '
                      "MMSegmentation's configs/_base_/datasets/ and default_runtime.py) or "
                      'test without --tta.')
        # checked before it wraps the model: its build errors would name model.type
        problem = component_config_problem(cfg.tta_model, MODELS, 'tta_model')
        if problem:
            exit_with(f'--tta: {args.config}: {problem}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    drop_training_parts(cfg)
    check_data_or_exit(cfg, splits=('test',))
    with user_errors_exit(cfg):
        check_run_options(cfg, args.config, training=False)
        # the runner saves its config as work_dir/<config name>: with the default
        # work_dir, where the training run of this config saved its own
        with file_kept(config_dump_path(cfg, cfg.work_dir)):
            runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
                      RUNNERS.build(cfg))
        check_segmentor_parts(runner.model)  # MMSeg's segmentors do not check them
        save_config_with_templates(runner, cfg, folder=runner.log_dir)
    check_checkpoint_fits_or_exit(runner.model, checkpoint, args.checkpoint, args.config)
    untrained = untrained_teacher_problem(runner.model, checkpoint, args.checkpoint,
                                          args.config)
    if untrained:
        exit_with(f'CHECKPOINT: {untrained}')
    for key, leaf in leaf_dataset_keys(cfg.test_dataloader.dataset, 'test_dataloader.dataset'):
        other = other_classes_problem(checkpoint, dataset_classes(leaf), args.checkpoint, key)
        if other:
            exit_with(f'CHECKPOINT: {other}')
    del checkpoint  # the runner loads the weights itself
    with user_errors_exit(cfg):
        runner.test()


if __name__ == '__main__':
    with interrupt_exits():
        main()
