"""Time training steps with the frozen-feature cache off and on, in one run.

Builds the config's model, optimizer and training dataloader, takes ``--iters``
batches, and times ``train_step`` on them (1) without the cache, (2) with the
cache filling (first epoch), (3) with every feature cached (later epochs). Prints
seconds per iteration and the speed-up, and writes them as JSON::

    python tools/benchmark_feature_cache.py configs/saot/demo_source_only.py --iters 10
"""
import argparse
import json
import sys
import tempfile
import time
from typing import List, Optional



def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmseg_saot.utils.arg_types import output_file, positive_int
    from mmseg_saot.utils.cli import CfgOptionsAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='a config whose model is EMATeacherUDA')
    parser.add_argument('--iters', type=positive_int, default=10, help='batches timed per mode')
    parser.add_argument('--out', type=output_file, help='JSON file for the result')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction,
                        help='key=value overrides, as for tools/train.py')
    return parser.parse_args(argv)


def time_steps(model, optim_wrapper, batches) -> float:
    """Seconds per ``train_step`` over ``batches``."""
    start = time.perf_counter()
    for batch in batches:
        model.train_step(batch, optim_wrapper)
    return (time.perf_counter() - start) / len(batches)


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    import torch
    from mmengine.runner import Runner

    import mmseg_saot  # noqa: F401
    from mmseg_saot.models.segmentors import FrozenFeatureCache
    from mmseg_saot.utils.cli import user_errors_exit
    from mmseg_saot.utils.run_config import load_run_config

    work_dir = tempfile.mkdtemp(prefix='feature_cache_bench_')
    cfg = load_run_config(args.config, args.cfg_options, work_dir)
    cfg.model.feature_cache, cfg.model.feature_cache_dir = False, None  # memory only, below
    cfg.custom_hooks = []  # timing the step alone (no labelling, no EMA)
    with user_errors_exit():
        runner = Runner.from_cfg(cfg)
    model = runner.model
    optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    loader = runner.train_loop.dataloader_iterator  # as tools/train.py iterates
    batches = [next(loader) for _ in range(args.iters)]
    model.train()
    torch.manual_seed(0)
    off = time_steps(model, optim_wrapper, batches)
    model.feature_cache = FrozenFeatureCache(max_gb=8.0)
    filling = time_steps(model, optim_wrapper, batches)
    cached = time_steps(model, optim_wrapper, batches)
    result = dict(config=args.config, iters=args.iters,
                  batch_size=cfg.train_dataloader.batch_size,
                  seconds_per_iter=dict(no_cache=round(off, 3), filling=round(filling, 3),
                                        cached=round(cached, 3)),
                  speedup=round(off / cached, 2), threads=torch.get_num_threads())
    print(f'{args.iters} iterations of {args.config} (batch {result["batch_size"]}, '
          f'{result["threads"]} threads):\n'
          f'  no cache       {off:.3f} s/iter\n'
          f'  cache filling  {filling:.3f} s/iter\n'
          f'  all cached     {cached:.3f} s/iter\n'
          f'  speed-up       {off / cached:.2f}x (cached vs no cache)')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
