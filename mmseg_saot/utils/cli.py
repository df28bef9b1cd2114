"""Command-line errors of the tools: one line naming the option or file and the fix
(exit 2), instead of a traceback; the launcher, folder, AMP and data-layout checks that
end that way. Config loading: :mod:`mmseg_saot.utils.run_config`; checkpoint checks:
:mod:`mmseg_saot.utils.checkpoint_checks`."""
import argparse
import contextlib
import logging
import os
import sys
from typing import Iterator, List, NoReturn, Optional, Sequence

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log

from mmseg_saot.utils.build_errors import explain_build_error
from mmseg_saot.utils.config_types import type_name
from mmseg_saot.utils.data_errors import explain_data_read_failure
from mmseg_saot.utils.errors import UserInputError
# the tools' Ctrl-C/SIGTERM handling, kept free of mmengine for torch-only machines
from mmseg_saot.utils.interrupts import Terminated, interrupt_exits  # noqa: F401
from mmseg_saot.utils.paths import ensure_folder


# What each --launcher reads from the environment (MMEngine's init_dist), and who sets it.
LAUNCHER_ENV = {
    'pytorch': ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
    'mpi': ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK', 'OMPI_COMM_WORLD_SIZE',
            'MASTER_ADDR'),
}
LAUNCHER_START = {
    'pytorch': 'torchrun sets them for each process: start with tools/dist_train.sh CONFIG '
               'NUM_GPUS (tools/dist_test.sh CONFIG CHECKPOINT NUM_GPUS to test) or '
               'torchrun --nproc_per_node=NUM_GPUS tools/train.py CONFIG --launcher pytorch',
    'slurm': 'srun sets them for each task: start the command with srun',
    'mpi': 'mpirun sets the OMPI_ ones (MASTER_ADDR is yours to set): start the command '
           'with mpirun',
}


def report_error(message: str, code: int = 2) -> int:
    """Print ``error: <message>`` to stderr (no traceback) and return ``code``, for a
    ``main`` that returns its exit code (the dataset converters)."""
    print(f'error: {message}', file=sys.stderr)
    return code


def exit_with(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` to stderr (no traceback) and exit with ``code``."""
    sys.exit(report_error(message, code))


class CfgOptionsAction(DictAction):
    """``--cfg-options KEY=VALUE ...``: MMEngine's ``DictAction``, but an item it cannot
    read (no ``=``, an empty key part, unbalanced brackets) is a usage error that names
    the item instead of a traceback from inside MMEngine."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Sequence[str], option_string: Optional[str] = None) -> None:
        for item in values:
            key, sep, value = item.partition('=')
            if not sep or '' in key.split('.'):
                parser.error(f'{option_string}: {item!r} is not KEY=VALUE with a dotted key '
                             '(e.g. train_cfg.max_iters=100); quote a value that has '
                             'spaces: "model.backbone.out_indices=[5, 11]"')
            try:
                self._parse_iterable(value)
            except AssertionError as err:  # MMEngine asserts balanced brackets
                parser.error(f'{option_string}: {item!r}: {err}; close the brackets, and '
                             'quote a value that has spaces as one argument: '
                             '"model.backbone.out_indices=[5, 11]"')
            except RecursionError:  # MMEngine's parser loops on dict(a=1,b=2)
                parser.error(f'{option_string}: {item!r}: dict(...) is no --cfg-options '
                             f'value; set its entries as dotted keys ({key}.NAME=VALUE, '
                             'one per entry), or set it in a config file whose _base_ is '
                             'this one')
        super().__call__(parser, namespace, values, option_string)


def check_launcher_env_or_exit(launcher: str) -> None:
    """Stop with a message if ``--launcher`` lacks the environment its processes get
    from their starter (torchrun, srun, mpirun), instead of MMEngine's ``KeyError``; or
    if it is ``'none'`` in one of several processes started together (each would run
    the whole job)."""
    if launcher == 'none':
        world = os.environ.get('WORLD_SIZE', '1')
        if world.isdigit() and int(world) > 1:
            exit_with(f'--launcher is none (the default), but this is one of {world} '
                      f'processes started together (WORLD_SIZE={world}, set by torchrun): each '
                      'would run the whole job into the same work_dir. Add --launcher pytorch '
                      '(tools/dist_train.sh does, unless its arguments say --launcher none), '
                      'or run the command alone.')
        return
    missing = [name for name in LAUNCHER_ENV.get(launcher, ()) if name not in os.environ]
    if missing:
        exit_with(f'--launcher {launcher}: the environment lacks {", ".join(missing)}; '
                  f'{LAUNCHER_START[launcher]}. Without --launcher the command runs as one '
                  'process.')
    if launcher in ('slurm', 'mpi') and not torch.cuda.is_available():
        exit_with(f'--launcher {launcher} needs CUDA GPUs (MMEngine gives each process one) '
                  'and this machine has none; for processes on CPUs start them with '
                  'torchrun: tools/dist_train.sh CONFIG NUM_PROCESSES (--launcher pytorch).')
    check_local_gpu_or_exit(launcher)


# The variable that holds a process's GPU index on its machine, per launcher
# (MMEngine's init_dist passes it to torch.cuda.set_device; slurm takes a modulo).
LOCAL_RANK_ENV = {'pytorch': 'LOCAL_RANK', 'mpi': 'OMPI_COMM_WORLD_LOCAL_RANK'}


def check_local_gpu_or_exit(launcher: str) -> None:
    """Stop with a message if this process's local rank has no GPU (more processes per
    machine than GPUs), instead of CUDA's "invalid device ordinal" from inside MMEngine.
    Without CUDA there is nothing to check: the processes run on CPUs (gloo)."""
    name = LOCAL_RANK_ENV.get(launcher)
    local_rank = os.environ.get(name or '', '')
    if not local_rank.isdigit() or not torch.cuda.is_available():
        return
    num_gpus = torch.cuda.device_count()
    if int(local_rank) >= num_gpus:
        visible = os.environ.get('CUDA_VISIBLE_DEVICES')
        seen = f' (CUDA_VISIBLE_DEVICES={visible})' if visible is not None else ''
        exit_with(f'--launcher {launcher}: this is process {local_rank} of its machine '
                  f'({name}={local_rank}), but the machine has {num_gpus} GPU(s){seen}: one '
                  f'process per GPU. Start at most {num_gpus} per machine '
                  f'(tools/dist_train.sh CONFIG {num_gpus}), or make more GPUs visible.')


def ensure_folder_or_exit(path: str, option: str) -> None:
    """Create folder ``path`` with its parents, or stop with a message naming ``option``
    (see :func:`mmseg_saot.utils.paths.ensure_folder`)."""
    try:
        ensure_folder(path, option)
    except UserInputError as err:
        exit_with(str(err))


def enable_amp(cfg: Config) -> None:
    """Switch ``cfg.optim_wrapper`` to automatic mixed precision (``--amp``).

    MMEngine's ``AmpOptimWrapper`` needs an accelerator; on a CPU-only machine this
    stops with a message instead of its assertion from inside the runner.
    """
    from mmengine.device import get_device
    if get_device() == 'cpu':
        exit_with('--amp needs a GPU (or an NPU, MLU or MUSA device) and this machine has '
                  'none; train without --amp.')
    if not isinstance(cfg.get('optim_wrapper'), dict):
        exit_with('--amp switches optim_wrapper to AmpOptimWrapper, and the config has no '
                  "optim_wrapper; give it one (e.g. dict(type='OptimWrapper', optimizer=...)).")
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    # a scoped name ('mmengine.OptimWrapper') or the class itself stands for the same type
    if type_name(wrapper_type) == 'AmpOptimWrapper':
        print_log('AMP training is already enabled in your config.',
                  logger='current', level=logging.WARNING)
        return
    if type_name(wrapper_type) != 'OptimWrapper':
        exit_with(f'--amp needs optim_wrapper.type "OptimWrapper", the config '
                  f'has "{wrapper_type}".')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.loss_scale = 'dynamic'


def check_data_or_exit(cfg: Config, splits: Sequence[str] = ('train', 'val', 'test')) -> None:
    """Stop with a readable message if a dataset folder of the dataloaders of ``splits``
    (those the tool builds) is missing."""
    from mmseg_saot.datasets import check_data_layout
    with user_errors_exit():
        check_data_layout(cfg, tuple(splits))


def user_message(err: UserInputError) -> str:
    """The message of ``err`` as raised, also when a DataLoader worker raised it: torch
    re-raises it in the main process with the worker's traceback as its message, so
    only what follows the final ``<module>.<class>: `` line is kept."""
    text = str(err)
    if 'Original Traceback' not in text:
        return text
    prefix = f'\n{type(err).__module__}.{type(err).__qualname__}: '
    start = text.rfind(prefix)
    return text if start < 0 else text[start + len(prefix):].strip()


def cfg_options_items(argv: Sequence[str]) -> List[str]:
    """The ``--cfg-options`` items of a command line (``argv`` without the program):
    what follows the option up to the next ``--`` option, and ``--cfg-options=K=V``
    (argparse also takes an unambiguous prefix such as ``--cfg``)."""
    items, inside = [], False
    for item in argv:
        name, _, value = item.partition('=')
        if item.startswith('--') and len(name) > 2 and '--cfg-options'.startswith(name):
            inside = not value
            items += [value] if value else []
        elif item.startswith('--'):
            inside = False
        elif inside:
            items.append(item)
    return items


@contextlib.contextmanager
def user_errors_exit(cfg: Optional[Config] = None) -> Iterator[None]:
    """Turn :class:`UserInputError` (bad file, folder or option) and a misspelt option
    or type of a registry-built component (:func:`explain_build_error`) into a message
    and exit code 2 instead of a traceback.

    Args:
        cfg: the run's config, to name the config entry at fault (and its file).
    """
    try:
        yield
    except UserInputError as err:
        exit_with(user_message(err))
    except (TypeError, KeyError) as err:
        source = (cfg.filename if cfg is not None and cfg.filename else None) or 'the config'
        message = explain_build_error(err, cfg, source)
        if message is None:
            raise
        exit_with(message)
    except Exception as err:
        message = explain_data_read_failure(err, cfg, cfg_options_items(sys.argv[1:]))
        if message is None:
            raise
        exit_with(message)
