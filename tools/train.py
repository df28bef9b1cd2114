"""Train a segmentor: ``python tools/train.py CONFIG [options]``.

The interface of MMSegmentation's tools/train.py, plus a check that the
datasets exist before anything is built.
"""
import argparse
import contextlib
import os
import os.path as osp
import shlex
import sys
import time
from typing import List, Optional

import mmseg_saot  # noqa: F401  (mends the stack, registers the plugin)
from mmengine.dist import get_rank
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmseg.registry import RUNNERS

from mmseg_saot.datasets.layout import pseudo_label_dirs
from mmseg_saot.engine.hooks import SaveOnInterruptHook, TrainingInterrupted
from mmseg_saot.engine.hooks.uda_stage_hook import missing_stage_hook_warning
from mmseg_saot.models.backbones.dinov2 import check_segmentor_parts
from mmseg_saot.engine.hooks.pending_validation import pending_on_any_rank
from mmseg_saot.utils.checkpoints import (DEFAULT_TEMPLATES, checkpoint_folders,
                                          newest_checkpoint, read_last_checkpoint)
from mmseg_saot.utils.checkpoint_checks import (check_checkpoint_fits_or_exit,
                                                check_checkpoint_or_exit, load_from_warning)
from mmseg_saot.utils.cli import (CfgOptionsAction, check_data_or_exit, enable_amp, exit_with,
                                  interrupt_exits, user_errors_exit)
from mmseg_saot.utils.config_types import has_type
from mmseg_saot.utils.resume_checks import resume_change_problems
from mmseg_saot.utils.run_config import (config_dump_path, file_kept, load_run_config,
                                         save_config_with_templates)
from mmseg_saot.utils.run_options import check_run_options


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line ``argv`` (default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description='Train a segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--resume', action='store_true',
                        help='resume from the latest checkpoint in work_dir')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed-precision training')
    parser.add_argument(
        '--cfg-options', nargs='+', action=CfgOptionsAction,
        help='override config settings, e.g. train_cfg.max_iters=100 '
        'model.backbone.checkpoint=/path/w.safetensors')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def checkpoint_to_resume(cfg, work_dir: str) -> Optional[str]:
    """The checkpoint ``runner.train()`` will resume from, as MMEngine picks it:
    ``load_from`` if set, else the one ``work_dir/last_checkpoint`` names."""
    if not cfg.resume:
        return None
    if cfg.get('load_from'):
        return cfg.load_from
    named = read_last_checkpoint(work_dir)
    if named is None:
        return None  # a fresh run: MMEngine starts from scratch
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not named:  # MMEngine would try to load '' and fail deep inside
        exit_with(f'--resume: {pointer} is empty (the run was stopped while writing it); '
                  f'{_resume_fix(cfg, work_dir)}')
    if not osp.exists(named):
        exit_with(f'--resume: {pointer} names {named}, which does not exist (deleted or '
                  f'moved); {_resume_fix(cfg, work_dir)}')
    return named


def choose_resume_source(cfg, load_from_given: bool) -> None:
    """Make ``--resume`` continue the run of ``cfg.work_dir`` (before the runner is built).

    MMEngine resumes from ``load_from`` whenever it is set, so a fine-tuning config's
    ``load_from`` (the pretrained start, in the config file) would restart the run; and
    without ``work_dir/last_checkpoint`` (checkpoints copied without it) it starts from
    scratch and writes over them. So, unless this command line gives ``load_from`` (an
    explicit choice, kept): with ``last_checkpoint``, that one (``load_from`` cleared;
    :func:`checkpoint_to_resume` checks it); without it, the newest checkpoint there;
    with none, no resume (a fine-tuning run starts from its ``load_from``).
    """
    if not cfg.resume or load_from_given:
        return
    named = read_last_checkpoint(cfg.work_dir)
    if named is not None:
        cfg.load_from = _this_runs_copy(named, cfg.work_dir)
        return
    newest = _newest(cfg, cfg.work_dir)
    if newest:
        print(f'--resume: {cfg.work_dir} has no last_checkpoint; resuming from the newest '
              f'checkpoint there, {newest}.', file=sys.stderr)
        cfg.load_from = newest
    elif cfg.get('load_from'):
        print(f'--resume: no checkpoint of this run yet in {cfg.work_dir}; starting from '
              f'load_from={cfg.load_from} as a new run.', file=sys.stderr)
        cfg.resume = False


def _this_runs_copy(named: str, work_dir: str) -> Optional[str]:
    """The checkpoint of ``work_dir`` that ``last_checkpoint`` means by ``named``: None
    (MMEngine reads the file itself) unless it names a file in another folder (a run
    copied with ``cp -r``, whose pointer keeps the first folder's absolute path) and
    ``work_dir`` has one of that name, which is then the one to resume, not the other
    run's."""
    if not named or osp.dirname(osp.abspath(named)) == osp.abspath(work_dir):
        return None
    local = osp.join(work_dir, osp.basename(named))
    if not osp.isfile(local):
        return None
    print(f'--resume: {work_dir}/last_checkpoint names {named}, in another folder (a copied '
          f'run); resuming from this run\'s {local}.', file=sys.stderr)
    return local


def _newest(cfg, work_dir: str) -> Optional[str]:
    """The newest checkpoint of the run, in the work_dir or the CheckpointHook's out_dir
    (the advice "no checkpoint is left there" started a new run over them)."""
    template = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('filename_tmpl')
    return newest_checkpoint(checkpoint_folders(cfg, work_dir),
                             ((template,) if template else ()) + DEFAULT_TEMPLATES)


def _resume_fix(cfg, work_dir: str) -> str:
    """How to go on when last_checkpoint is unusable: the newest checkpoint there, if any."""
    newest = _newest(cfg, work_dir)
    if newest:
        return ('resume from the newest checkpoint there: --resume --cfg-options '
                + shlex.quote(f'load_from={newest}'))
    return 'no checkpoint is left there: train without --resume'


def main() -> None:
    args = parse_args()
    cfg = load_run_config(args.config, args.cfg_options, args.work_dir,
                          args.launcher)
    if args.amp:
        enable_amp(cfg)
    cfg.resume = args.resume
    choose_resume_source(cfg, 'load_from' in (args.cfg_options or {}))
    loaded = (check_checkpoint_or_exit(cfg.load_from, 'load_from')
              if cfg.get('load_from') else None)
    check_data_or_exit(cfg, splits=('train', 'val'))  # what training builds
    # MMEngine's Runner saves the config in the work_dir when it is built: a resume refused
    # below would have replaced the run's own config by this command's
    keep_config = (file_kept(config_dump_path(cfg, cfg.work_dir)) if cfg.get('resume')
                   else contextlib.nullcontext())
    with keep_config:
        with user_errors_exit(cfg):
            check_run_options(cfg, args.config)
            runner = (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
                      RUNNERS.build(cfg))
            check_segmentor_parts(runner.model)  # MMSeg's segmentors do not check them
            model = runner.model.module if is_model_wrapper(runner.model) else runner.model
            if hasattr(model, 'check_training_parts'):
                model.check_training_parts()
            stage_warning = missing_stage_hook_warning(
                runner.model, runner.hooks, (cfg.get('train_dataloader') or {}).get('dataset'))
            if stage_warning:
                runner.logger.warning(stage_warning)
        resume_from = checkpoint_to_resume(cfg, runner.work_dir)
        if resume_from:  # MMEngine loads it non-strictly: it must be this model's
            checkpoint = (loaded if resume_from == cfg.get('load_from') else
                          check_checkpoint_or_exit(resume_from, '--resume'))
            check_checkpoint_fits_or_exit(runner.model, checkpoint, resume_from, args.config,
                                          '--resume')
            max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
            done = finished_at(checkpoint, max_iters)
            changed = resume_change_problems(checkpoint, cfg) if done is None else []
            del checkpoint
            if changed:
                exit_with(f'--resume: {resume_from} was trained with other optimizer or schedule '
                          f'settings ({"; ".join(changed)}). A resume restores the '
                          "checkpoint's optimizer and learning-rate schedule over the config's, "
                          'so these changes would be ignored (another optimizer type fails at '
                          'the first step). Resume with the settings the run started with (its '
                          f'config is saved in {runner.work_dir}), or fine-tune from it in a new '
                          '--work-dir with --cfg-options '
                          + shlex.quote(f'load_from={resume_from}') + '.')
            if done is not None:
                if pending_on_any_rank(runner.work_dir, done):
                    validate_last_iteration(runner, cfg, resume_from, done)
                    return
                print(f'--resume: {resume_from} is iteration {done}, and train_cfg.max_iters is '
                      f'{max_iters}: nothing is left to train. Its learning-rate schedule ended '
                      'there too, and a resume restores it, so a larger max_iters would train at '
                      'its final rate; to train longer, fine-tune from it in a new --work-dir '
                      'with --cfg-options '
                      + shlex.quote(f'load_from={resume_from}')
                      + ' and a longer schedule (train_cfg.max_iters and the end of each '
                      f'param_scheduler){fine_tune_notes(cfg, runner.work_dir)}.', file=sys.stderr)
                return
        elif loaded is not None:  # fine-tuning: a partial fit is allowed, and said
            warning = load_from_warning(runner.model, loaded, cfg.load_from)
            if warning:
                runner.logger.warning(warning)
    save_config_with_templates(runner, cfg)  # the run goes ahead with this config
    del loaded  # the runner loads the weights itself
    for hook in runner.hooks:  # before the DataLoader workers fork: they ignore Ctrl-C
        if isinstance(hook, SaveOnInterruptHook):
            hook.install()
    started = time.time()
    try:
        with user_errors_exit(cfg), interrupt_exits(
                lambda: f'{runner.work_dir} keeps its checkpoints and the pseudo-labels '
                f'written so far; continue with: '
                f'{continue_command(args, runner.work_dir, started)}'):
            runner.train()
    except TrainingInterrupted as stop:
        if get_rank() == 0:
            print(f'Stopped after iteration {stop.iteration}; {stop.checkpoint} holds the '
                  f'run. Continue with: {resume_command(args, runner.work_dir)}',
                  file=sys.stderr)
        sys.exit(stop.exit_code)  # 130 after Ctrl-C, 143 after SIGTERM


def validate_last_iteration(runner, cfg, resume_from: str, done: int) -> None:
    """Run the validation of a finished run's last iteration that a stop cut short."""
    if get_rank() == 0:
        print(f'--resume: {resume_from} is the last iteration ({done}), whose validation '
              'was cut short when the run stopped; running it now.', file=sys.stderr)
    with user_errors_exit(cfg), interrupt_exits(
            'Validation interrupted; the same command runs it again.'):
        val_loop = runner.val_loop  # built here, as runner.val() does
        runner.call_hook('before_run')
        runner.load_or_resume()
        # runner.val() skips before_train: a CheckpointHook would have no folder to save
        # a new best checkpoint in (save_best), nor the best score so far
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                hook.before_train(runner)
        val_loop.run()
        runner.call_hook('after_run')


def fine_tune_notes(cfg, work_dir: str) -> str:
    """What a fine-tuning run of ``cfg`` from this run would do again, and how to spare
    it: a UDA config starts stage 1 again at iteration 0, and labels the target set again
    into its new work_dir (a complete matching cache copied there is reused). '' when
    neither applies."""
    notes = []
    for index, hook in enumerate(cfg.get('custom_hooks') or []):
        begin = hook.get('self_training_begin') if has_type(hook, 'UDAStageHook') else None
        if isinstance(begin, int) and begin > 0:
            notes.append(f'starts stage 1 again at iteration 0 (custom_hooks.{index}.'
                         'self_training_begin=0 goes on self-training, with the teacher '
                         'of the checkpoint)')
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    for _, folder in pseudo_label_dirs(dataset, 'train_dataloader.dataset'):
        relative = (osp.relpath(osp.abspath(folder), osp.abspath(work_dir))
                    if isinstance(folder, str) else os.pardir)
        if not relative.startswith(os.pardir):  # inside the work_dir
            notes.append(f'labels the target set again into the new work_dir (copy {folder} '
                         f'to <new work_dir>/{relative} first to reuse these pseudo-labels)')
    return '; this config ' + ' and '.join(notes) if notes else ''


def finished_at(checkpoint, max_iters: Optional[int]) -> Optional[int]:
    """The iteration of a checkpoint that already reached ``max_iters`` (an iteration-based
    run), else None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    done = meta.get('iter') if isinstance(meta, dict) else None
    if isinstance(done, int) and isinstance(max_iters, int) and done >= max_iters:
        return done
    return None


def continue_command(args: argparse.Namespace, work_dir: str, started: float,
                     argv: Optional[List[str]] = None) -> str:
    """How to go on after a stop that was not at an iteration's end (before the first
    iteration, or a second Ctrl-C): :func:`resume_command` once the run has a checkpoint
    (it resumed one, or saved one since ``started``), else this same command again, so
    that a fine-tuning run keeps its ``load_from``."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    has_checkpoint = bool(read_last_checkpoint(work_dir)) and (
        args.resume or osp.getmtime(pointer) >= started)
    if has_checkpoint:
        return resume_command(args, work_dir, argv)
    return _command(args, work_dir, _without_run_options(
        sys.argv[1:] if argv is None else argv), resume=args.resume)


def resume_command(args: argparse.Namespace, work_dir: str,
                   argv: Optional[List[str]] = None) -> str:
    """The command that continues this run from its last checkpoint: this command line
    (``argv``, default ``sys.argv[1:]``: its ``--cfg-options`` and ``--amp`` included,
    shell-quoted) with ``--work-dir`` set to the run's folder and ``--resume``. A
    ``load_from`` option is left out: with it, ``--resume`` would restart from that
    checkpoint instead of the run's last one."""
    kept = _without_load_from(_without_run_options(sys.argv[1:] if argv is None else argv))
    return _command(args, work_dir, kept, resume=True)


def _command(args: argparse.Namespace, work_dir: str, kept: List[str],
             resume: bool) -> str:
    """``kept`` (the arguments) with ``--work-dir work_dir`` (and ``--resume``), as a
    shell command for one process, or as a hint for a launcher's."""
    tail = ['--work-dir', work_dir] + (['--resume'] if resume else [])
    if args.launcher == 'none':  # before a '--': what follows it is positional
        at = kept.index('--') if '--' in kept else len(kept)
        return 'python tools/train.py ' + shlex.join(kept[:at] + tail + kept[at:])
    options = [item for item in kept if item not in (args.config, '--')]
    example = shlex.join([args.config, 'NUM_GPUS'] + options + tail)
    return (f'the same launch with {shlex.join(tail)} (e.g. '
            f'tools/dist_train.sh {example})')


def _without_load_from(argv: List[str]) -> List[str]:
    """``argv`` without ``load_from=...`` among its ``--cfg-options`` (and without the
    ``--cfg-options`` flag itself when nothing else was under it)."""
    kept: List[str] = []
    under_flag = False
    for item in argv:
        flag, _, value = item.partition('=')
        if _is_cfg_options(flag) and value:  # --cfg-options=key=value
            if value.split('=', 1)[0] == 'load_from':
                continue
        elif item.startswith('-'):
            under_flag = _is_cfg_options(item)
        elif under_flag and flag == 'load_from':
            continue
        kept.append(item)
    return _without_empty_cfg_options(kept)


def _is_cfg_options(flag: str) -> bool:
    """``--cfg-options`` or a prefix argparse takes for it (``--cfg``)."""
    return len(flag) > 2 and '--cfg-options'.startswith(flag)


def _without_empty_cfg_options(argv: List[str]) -> List[str]:
    """``argv`` without a ``--cfg-options`` flag that has no ``key=value`` after it."""
    kept = []
    for at, item in enumerate(argv):
        following = argv[at + 1] if at + 1 < len(argv) else '--'
        if _is_cfg_options(item) and following.startswith('-'):
            continue
        kept.append(item)
    return kept


def _without_run_options(argv: List[str]) -> List[str]:
    """``argv`` without the options a resume sets or its launcher adds (``--resume``,
    ``--work-dir``, ``--launcher``, ``--local-rank``)."""
    dropped_with_value = ('--work-dir', '--launcher', '--local_rank', '--local-rank')
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == '--resume' or item.split('=', 1)[0] in dropped_with_value and '=' in item:
            continue
        elif item in dropped_with_value:
            skip = True
        else:
            kept.append(item)
    return kept


if __name__ == '__main__':
    with interrupt_exits():  # before training began (building the runner, say)
        main()
