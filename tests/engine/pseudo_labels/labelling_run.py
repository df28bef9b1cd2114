"""Run SAOTPseudoLabelHook.run on a config, in-process or as a script (kill tests).

    python labelling_run.py CONFIG WORK_DIR [SECONDS_PER_WRITE]   # pauses halfway in each
    python labelling_run.py --ddp N CONFIG WORK_DIR     # N gloo processes on CPU

The model is built after ``torch.manual_seed(0)``, so a random-weight backbone is the
same in every process (the cache fingerprint includes its weights).
"""
import sys
import time

import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope


def run_labelling(config_path, work_dir, seconds_per_write: float = 0.0,
                  cfg_options: dict = None) -> dict:
    import mmseg_saot  # noqa: F401
    from mmseg.registry import DATASETS, HOOKS, MODELS

    from mmseg_saot.engine.hooks import find_pseudo_label_dataset
    from mmseg_saot.utils.run_config import fill_work_dir
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(config_path))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    fill_work_dir(cfg, str(work_dir))
    if seconds_per_write:
        _slow_down_writes_under(str(work_dir), seconds_per_write)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    hook = HOOKS.build(cfg.custom_hooks[0])
    dataset = find_pseudo_label_dataset(DATASETS.build(cfg.train_dataloader.dataset))
    return hook.run(model, dataset)


class _HalfwayPause:
    """A binary file whose every write stops halfway for ``seconds``: a kill then lands
    in the middle of a file, where a writer that is not atomic leaves it cut."""

    def __init__(self, file, seconds: float) -> None:
        self._file, self._seconds = file, seconds

    def write(self, data) -> int:
        half = len(data) // 2
        self._file.write(data[:half])
        self._file.flush()
        time.sleep(self._seconds)
        return half + self._file.write(data[half:])

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._file.__exit__(*exc)


def _slow_down_writes_under(folder: str, seconds: float) -> None:
    """Every file opened for binary writing under ``folder`` pauses halfway through each
    write (whatever writes it: the cache, PIL, a plain ``open``)."""
    import builtins
    import os.path as osp
    real_open = builtins.open
    root = osp.abspath(folder)

    def open_(file, mode='r', *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if ('w' in mode and 'b' in mode and isinstance(file, str)
                and osp.abspath(file).startswith(root + osp.sep)
                and not file.endswith('.json')):
            return _HalfwayPause(handle, seconds)
        return handle

    builtins.open = open_


def ddp_worker(rank: int, world_size: int, config_path: str, work_dir: str,
               init_file: str) -> None:
    """One rank of a gloo process group running the labelling."""
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world_size)
    try:
        manifest = run_labelling(config_path, work_dir)
        print(f'rank {rank}: complete={manifest["complete"]}', flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == '__main__':
    torch.set_num_threads(1)
    if sys.argv[1] == '--ddp':
        import os
        import torch.multiprocessing as mp
        world, config, work = int(sys.argv[2]), sys.argv[3], sys.argv[4]
        init = os.path.join(work, '.dist_init')
        os.makedirs(work, exist_ok=True)
        mp.spawn(ddp_worker, args=(world, config, work, init), nprocs=world)
    else:
        run_labelling(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
