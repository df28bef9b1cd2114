"""Time training steps with the frozen-feature cache off and on, in one run.

Builds the config's model, optimizer and training dataloader, takes ``--iters``
batches, and times ``train_step`` on them with the cache filling (the first epoch),
then without the cache and with every feature cached (later epochs) in turn, batch by
batch, after one untimed warm-up step (the first step of a process pays for allocations
and thread pools). Prints
seconds per iteration and the speed-up, and writes them as JSON::

    python tools/benchmark_feature_cache.py configs/saot/demo_source_only.py --iters 10

The cached phase replays the batches of the filling phase, so every step is a cache
hit: the speed of a later epoch whose inputs repeat exactly, as with the demo
configs' load-and-resize pipelines. With random crops, flips or resizes in the
training pipeline (``gta2cs.py``) a later epoch hits only where an input repeats;
the result then lists those transforms under ``random_transforms`` and the report
says that the speed-up is an upper bound.

A config whose target set trains on SAOT pseudo-labels (``configs/saot/demo.py``,
``gta2cs.py``) needs them written first (``tools/generate_pseudo_labels.py``) and
named with ``--cfg-options train_dataloader.dataset.target.pseudo_label_dir=DIR``;
without them the tool stops with that command before building the model.
"""
import argparse
import contextlib
import json
import os.path as osp
import shlex
import shutil
import sys
import tempfile
import time
from typing import Iterator, List, Optional


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmseg_saot.utils.arg_types import output_file, positive_int
    from mmseg_saot.utils.cli import CfgOptionsAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a config whose model is EMATeacherUDA')
    parser.add_argument('--iters', type=positive_int, default=10, help='batches timed per mode')
    parser.add_argument('--out', type=output_file, help='JSON file for the result')
    parser.add_argument('--work-dir', help='the runner\'s folder (its log and config), kept '
                        '(default: a temporary folder, removed at the end, also after an '
                        'error or Ctrl-C)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='key=value overrides, as for tools/train.py')
    return parser.parse_args(argv)


@contextlib.contextmanager
def benchmark_folder(work_dir: Optional[str]) -> Iterator[str]:
    """``work_dir`` as given (kept), or a temporary folder removed on the way out, also
    when the block raises or is interrupted.

    Args:
        work_dir: ``--work-dir``, or None for a temporary folder.
    """
    if work_dir is not None:
        yield work_dir
        return
    folder = tempfile.mkdtemp(prefix='feature_cache_bench_')
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def missing_pseudo_labels(cfg, config_path: str) -> Optional[str]:
    """Why the training set of ``cfg`` cannot be read: a pseudo-label folder it trains
    on holds no complete cache (no ``manifest.json`` marked complete), with the
    commands that write one and point the benchmark at it; None when none is missing.
    """
    from mmseg_saot.datasets.layout import pseudo_label_dirs
    from mmseg_saot.datasets.pseudo_label_cache import PseudoLabelCache
    from mmseg_saot.utils.run_config import default_work_dir
    dataset = cfg.train_dataloader.dataset
    for key, folder in pseudo_label_dirs(dataset, 'train_dataloader.dataset'):
        manifest = PseudoLabelCache(folder or '').read_manifest() or {}
        if not manifest.get('complete'):
            written = osp.join(default_work_dir(config_path), 'pseudo_labels')
            return (f'{key}={folder}: no complete pseudo-labels there (no manifest.json '
                    'marked complete), and the config\'s target set trains on them. Write '
                    f'them with `python tools/generate_pseudo_labels.py {config_path}` (into '
                    f'{written}), then add --cfg-options {key}={written}')
    return None


def model_problem(cfg, config_path: str) -> Optional[str]:
    """Why ``cfg``'s model has no frozen-feature cache to time (it is no
    :class:`EMATeacherUDA`), or None: the tool sets ``model.feature_cache``, which another
    model would refuse as an option of the user's config."""
    from mmseg.registry import MODELS

    import mmseg_saot  # noqa: F401  (registers the plugin's models)
    from mmseg_saot.models.segmentors import EMATeacherUDA
    kind = (cfg.get('model') or {}).get('type')
    model_class = MODELS.get(kind) if isinstance(kind, str) else kind
    if isinstance(model_class, type) and issubclass(model_class, EMATeacherUDA):
        return None
    return (f'{config_path}: model.type is {kind!r}; this benchmark times the frozen-feature '
            'cache of an EMATeacherUDA model. Give a config of one, e.g. '
            'configs/saot/demo_source_only.py')


def _synchronize(device) -> None:
    """Wait for ``device``'s queued work (a GPU's kernels run after train_step returns)."""
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_steps(model, optim_wrapper, batches) -> float:
    """Seconds per ``train_step`` over ``batches``, the device's work done at both ends."""
    device = next(model.parameters()).device
    _synchronize(device)
    start = time.perf_counter()
    for batch in batches:
        model.train_step(batch, optim_wrapper)
    _synchronize(device)
    return (time.perf_counter() - start) / len(batches)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    from mmseg_saot.utils.cli import check_data_or_exit, exit_with, user_errors_exit
    from mmseg_saot.utils.run_config import load_run_config

    with benchmark_folder(args.work_dir) as work_dir:
        cfg = load_run_config(args.config, args.cfg_options, work_dir)
        problem = model_problem(cfg, args.config)
        if problem:
            exit_with(problem)
        check_data_or_exit(cfg, ('train',))
        missing = missing_pseudo_labels(cfg, args.config)
        if missing:
            exit_with(missing)
        with user_errors_exit(cfg):
            result = dict(config=args.config, **measure(cfg, iters=args.iters))
    tool = 'tools/benchmark_feature_cache.py'  # what reproduces the JSON
    result['command'] = shlex.join(['python', tool, *(sys.argv[1:] if argv is None else argv)])
    report(result)
    if args.out:
        from mmseg_saot.utils.atomic import atomic_write_text
        atomic_write_text(args.out, json.dumps(result, indent=1) + '\n')
    return result


def measure(cfg, *, iters: int) -> dict:
    """Seconds per training step of ``iters`` batches of ``cfg``: no cache, filling,
    cached; with the batch size, speed-up and threads."""
    import torch
    from mmengine.runner import Runner

    import mmseg_saot  # noqa: F401
    from mmseg_saot.models.segmentors import FrozenFeatureCache
    from mmseg_saot.utils.machine import describe_device
    cfg.model.feature_cache, cfg.model.feature_cache_dir = False, None  # memory only, below
    cfg.custom_hooks = []  # timing the step alone (no labelling, no EMA)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    loader = runner.train_loop.dataloader_iterator  # as tools/train.py iterates
    batches = [next(loader) for _ in range(iters)]
    model.train()
    torch.manual_seed(0)
    time_steps(model, optim_wrapper, batches[:1])  # warm-up (allocator, threads), not counted
    cache = FrozenFeatureCache(max_gb=8.0)
    model.feature_cache = cache
    filling = time_steps(model, optim_wrapper, batches)
    # batch by batch, off then cached: a slow phase of a shared machine (steps vary by
    # up to 1.5x on the 2-core EPYC) falls on both modes, not on one
    off = cached = 0.0
    for batch in batches:
        model.feature_cache = None
        off += time_steps(model, optim_wrapper, [batch]) / len(batches)
        model.feature_cache = cache
        cached += time_steps(model, optim_wrapper, [batch]) / len(batches)
    return dict(iters=iters, batch_size=cfg.train_dataloader.batch_size,
                seconds_per_iter=dict(no_cache=round(off, 3), filling=round(filling, 3),
                                      cached=round(cached, 3)),
                speedup=round(off / cached, 2), threads=torch.get_num_threads(),
                random_transforms=random_transforms(cfg.train_dataloader.dataset),
                machine=describe_device(str(next(model.parameters()).device)))


def random_transforms(dataset_cfg) -> List[str]:
    """The types of the random transforms in the pipelines under ``dataset_cfg``
    (``RandomCrop``, ``RandomFlip``, ``RandomResize``, ``PhotoMetricDistortion``)."""
    from mmseg_saot.utils.build_errors import walk
    from mmseg_saot.utils.config_types import type_name
    root = dataset_cfg.to_dict() if hasattr(dataset_cfg, 'to_dict') else dataset_cfg
    names = {type_name(node['type']) for _, node in walk(root)
             if isinstance(node, dict) and node.get('type') is not None}
    return sorted(n for n in names if n.startswith('Random') or n == 'PhotoMetricDistortion')


def report(result: dict) -> None:
    """Print the seconds per iteration of each mode and the speed-up."""
    seconds = result['seconds_per_iter']
    print(f'{result["iters"]} iterations of {result["config"]} (batch {result["batch_size"]}, '
          f'{result["threads"]} threads, {result["machine"]}):\n'
          f'  no cache       {seconds["no_cache"]:.3f} s/iter\n'
          f'  cache filling  {seconds["filling"]:.3f} s/iter\n'
          f'  all cached     {seconds["cached"]:.3f} s/iter\n'
          f'  speed-up       {result["speedup"]:.2f}x (cached vs no cache)')
    if result.get('random_transforms'):
        print(f'  note: the training pipeline has {", ".join(result["random_transforms"])}: a '
              'later epoch hits the cache only where an input repeats, so this speed-up is '
              'an upper bound (the cached phase replays the same batches).')


if __name__ == '__main__':
    from mmseg_saot.utils.interrupts import interrupt_exits
    with interrupt_exits('The temporary work folder is removed (a --work-dir is kept).'):
        sys.exit(0 if main() else 1)
