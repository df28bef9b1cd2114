"""Smoke-run a UDA config on generated data at full Cityscapes resolution.

Generates a few synthetic 2048x1024 street scenes in the GTA5 and Cityscapes
layouts (``make_demo_data.py --width 2048 --height 1024``), then runs the whole
``tools/train.py CONFIG`` pipeline on them -- SAOT pseudo-labels, a few stage-1
and stage-2 iterations, validation of both heads -- with the backbone's random
weights (no hub), and reports seconds per iteration of each stage and the peak
GPU memory from the run's log::

    python tools/smoke_full_resolution.py                       # gta2cs.py, ViT-L/14
    python tools/smoke_full_resolution.py --stage-iters 2 --cfg-options \\
        model.backbone.model_name=vit_small_patch14_dinov2 \\
        model.decode_head.in_channels=[384,384,384,384]      # a quick CPU check
"""
import argparse
import json
import os.path as osp
import sys
from glob import glob
from typing import List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The options, checked before the data generation that precedes the training run.

    Exits with code 2 (a usage error) if ``--config`` is not a file or ``--out`` cannot
    be a folder.
    """
    from mmseg_saot.utils.arg_types import positive_int
    from mmseg_saot.utils.errors import UserInputError
    from mmseg_saot.utils.paths import ensure_folder
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=osp.join(REPO, 'configs', 'saot', 'gta2cs.py'))
    parser.add_argument('--out', default='work_dirs/smoke_full_resolution',
                        help='data and work_dir go under it')
    parser.add_argument('--num-images', type=positive_int, default=8,
                        help='source images, and target train images')
    parser.add_argument('--stage-iters', type=positive_int, default=10,
                        help='iterations of each stage (N1 = N2)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='extra tools/train.py overrides (key=value)')
    args = parser.parse_args(argv)
    malformed = [item for item in args.cfg_options if '=' not in item]
    if malformed:  # before the data is generated, not when train.py reads them
        parser.error(f'--cfg-options: {malformed[0]!r} is not key=value')
    if not osp.isfile(args.config):
        parser.error(f'--config {args.config}: no such file; give a config file such as '
                     f'{osp.join(REPO, "configs", "saot", "gta2cs.py")}')
    try:
        ensure_folder(args.out, option='--out')
    except UserInputError as err:
        parser.error(str(err))
    return args


class StepFailed(Exception):
    """A step exited with ``code`` (it has printed why)."""

    def __init__(self, command: List[str], code: int):
        step = osp.basename(command[1])
        if code < 0:  # ended by a signal: the shell's 128 + its number
            import signal
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f'signal {-code}'
            super().__init__(f'{step} was ended by {name}')
            self.code = 128 - code
        else:
            super().__init__(f'{step} exited with status {code}')
            self.code = code


def run(command: List[str]) -> None:
    """Run one step; a Ctrl-C waits for it to stop (a training run saves first).

    Raises:
        StepFailed: the step exited with a non-zero status.
    """
    from mmseg_saot.utils.child_process import run_child
    print('+ ' + ' '.join(command), flush=True)
    code = run_child(command)
    if code != 0:
        raise StepFailed(command, code)


def overrides(data: str, args: argparse.Namespace) -> List[str]:
    """Point the config at the generated data and shorten both stages."""
    n1 = args.stage_iters
    return [
        f'train_dataloader.dataset.source.data_root={data}/gta5',
        f'train_dataloader.dataset.target.dataset.data_root={data}/cityscapes',
        f'val_dataloader.dataset.data_root={data}/cityscapes',
        f'test_dataloader.dataset.data_root={data}/cityscapes',
        f'custom_hooks.0.source.data_root={data}/gta5',
        f'custom_hooks.0.num_source_images={args.num_images}',
        f'custom_hooks.2.self_training_begin={n1}',
        f'train_cfg.max_iters={2 * n1}', f'train_cfg.val_interval={n1}',
        'default_hooks.logger.interval=1', f'default_hooks.checkpoint.interval={n1}',
        'model.backbone.pretrained=False',  # random weights: no model hub needed
        'train_dataloader.num_workers=2', 'val_dataloader.num_workers=2',
        'test_dataloader.num_workers=2',
    ] + list(args.cfg_options)


def summarise(work_dir: str, stage_iters: int) -> dict:
    """Seconds per iteration of each stage and the peak memory, from scalars.json."""
    logs = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    records = [json.loads(line) for line in open(logs[-1]) if line.strip()]
    train = [r for r in records if 'time' in r and 'iter' in r and 'loss' in r]

    def seconds(lo: int, hi: int) -> Optional[float]:
        # skip each stage's first iteration (feature cache, warm-up)
        times = [r['time'] for r in train if lo + 1 < r['iter'] <= hi]
        return round(sum(times) / len(times), 3) if times else None

    memory = [r['memory'] for r in train if 'memory' in r]
    return dict(stage1_s_per_iter=seconds(0, stage_iters),
                stage2_s_per_iter=seconds(stage_iters, 2 * stage_iters),
                peak_memory_mb=max(memory) if memory else None,
                iterations=len(train))


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return smoke(args)
    except StepFailed as err:  # the step's own messages are above: no traceback
        print(f'error: {err}; see its messages above. What the finished steps wrote '
              f'under {args.out} is kept.', file=sys.stderr)
        return err.code


def smoke(args: argparse.Namespace) -> int:
    """The three steps and the summary."""
    data, work_dir = osp.join(args.out, 'data'), osp.join(args.out, 'work')
    python = sys.executable
    run([python, osp.join(REPO, 'tools', 'dataset_converters', 'make_demo_data.py'),
         '--out', data, '--width', '2048', '--height', '1024',
         '--num-source', str(args.num_images), '--num-target-train', str(args.num_images),
         '--num-target-val', '2'])
    run([python, osp.join(REPO, 'tools', 'dataset_converters', 'gta5.py'),
         osp.join(data, 'gta5'), '--nproc', '2'])
    run([python, osp.join(REPO, 'tools', 'train.py'), args.config, '--work-dir', work_dir,
         '--cfg-options', *overrides(data, args)])
    result = dict(config=args.config, resolution='2048x1024',
                  **summarise(work_dir, args.stage_iters))
    from mmseg_saot.utils.atomic import atomic_write_text
    atomic_write_text(osp.join(args.out, 'smoke.json'), json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('What the finished steps wrote under --out is kept (an '
                         'interrupted training run saves a checkpoint first).'):
        sys.exit(main())
