"""Shared plumbing of ``tools/train.py``, ``tools/test.py`` and
``tools/generate_pseudo_labels.py``: config loading and command-line errors."""
import argparse
import contextlib
import copy
import logging
import os
import os.path as osp
import sys
from typing import Any, Iterator, List, NoReturn, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction
from mmengine.dist import get_rank
from mmengine.logging import print_log

from mmseg_saot.utils.build_errors import explain_build_error
from mmseg_saot.utils.data_errors import explain_data_read_failure
from mmseg_saot.utils.errors import UserInputError, error_reason, load_failure_reason
from mmseg_saot.utils.paths import ensure_folder

WORK_DIR_TOKEN = '{work_dir}'
_TEMPLATES_ATTR = '_work_dir_templates'  # on a Config object, outside its dict

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


def exit_with(message: str, code: int = 2) -> NoReturn:
    """Print ``message`` to stderr (no traceback) and exit with ``code``."""
    print(f'error: {message}', file=sys.stderr)
    sys.exit(code)


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


def ensure_folder_or_exit(path: str, option: str) -> None:
    """Create folder ``path`` with its parents, or stop with a message naming ``option``
    (see :func:`mmseg_saot.utils.paths.ensure_folder`)."""
    try:
        ensure_folder(path, option)
    except UserInputError as err:
        exit_with(str(err))


def load_config(config_path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config file and apply ``--cfg-options``; a missing file stops with a message.

    Args:
        config_path (str): the config file.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
    """
    if not osp.isfile(config_path):
        exit_with(f'config file "{config_path}" does not exist (configs live '
                  'under configs/saot/, e.g. configs/saot/gta2cs.py).')
    try:
        cfg = Config.fromfile(config_path)
    except Exception as err:  # the file's content: Python or YAML errors, missing bases
        exit_with(config_load_problem(config_path, err))
    if cfg_options:
        for key in cfg_options:
            problem = list_index_problem(cfg, key)
            if problem:
                exit_with(f'--cfg-options {key}=...: {problem}.')
        cfg.merge_from_dict(cfg_options)
    return cfg


def list_index_problem(cfg: Config, key: str) -> Optional[str]:
    """Why a dotted ``--cfg-options`` key names a list entry the config does not have
    (``custom_hooks.3.type`` with three hooks), or None. MMEngine raises a KeyError
    that prints the whole list instead."""
    node, path = cfg, []
    for part in key.split('.'):
        if isinstance(node, (list, tuple)):
            if not part.isdigit():
                return None  # MMEngine's own error names the key
            index = int(part)
            if index >= len(node):
                listed = '.'.join(path)
                return (f'{listed} has {len(node)} entr{"y" if len(node) == 1 else "ies"} '
                        f'(0-{len(node) - 1}), not {index}' if node else
                        f'{listed} is an empty list')
            node = node[index]
        elif isinstance(node, (dict, Config)) and part in node:
            node = node[part]
        else:
            return None  # a new key: MMEngine adds it
        path.append(part)
    return None


def config_load_problem(config_path: str, err: Exception) -> str:
    """One line saying why MMEngine could not load ``config_path``: the file and line of
    a syntax error (MMEngine reports ``<unknown>``), a missing ``_base_`` file, or the
    error's own words."""
    if isinstance(err, SyntaxError):
        import ast
        where = f'config "{config_path}"'
        try:
            with open(config_path, encoding='utf-8') as f:
                ast.parse(f.read())
            where += ' (in one of its _base_ files)'
        except (SyntaxError, OSError, ValueError):
            pass  # the error is in the file itself (or it cannot be read again)
        return f'{where}, line {err.lineno}: syntax error: {err.msg}.'
    if isinstance(err, FileNotFoundError) and err.filename:
        return f'config "{config_path}": the file {err.filename} it names does not exist.'
    return f'config "{config_path}" cannot be loaded ({error_reason(err)}).'


def load_run_config(config_path: str,
                    cfg_options: Optional[dict] = None,
                    work_dir: Optional[str] = None,
                    launcher: str = 'none') -> Config:
    """Load a config, apply CLI overrides and pick its ``work_dir``.

    ``work_dir`` priority, as in MMSeg: command line, then the config, then
    ``./work_dirs/<config name>``.

    Args:
        config_path (str): the config file.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        work_dir (str, optional): ``--work-dir``.
        launcher (str): ``--launcher``.

    Returns:
        Config: the merged config.
    """
    cfg = load_config(config_path, cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir, source = work_dir, '--work-dir'
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config_path))[0])
        source = 'work_dir (the default for this config)'
    else:
        source = f'work_dir (set in {config_path} or --cfg-options)'
    ensure_folder_or_exit(cfg.work_dir, source)
    # kept beside the config (not in it) for save_config_with_templates
    object.__setattr__(cfg, _TEMPLATES_ATTR, fill_work_dir(cfg, cfg.work_dir))
    check_launcher_env_or_exit(launcher)
    if launcher != 'none':
        from mmseg_saot.utils.cpu_distributed import prepare_cpu_distributed
        prepare_cpu_distributed(cfg, launcher)
    return cfg


def fill_work_dir(node, work_dir: str,
                  path: Tuple = ()) -> List[Tuple[Tuple, str]]:
    """Replace ``'{work_dir}'`` in every string of a config, in place.

    Paths that belong to a run (the pseudo-label cache) are written as
    ``'{work_dir}/pseudo_labels'`` in configs; the work_dir is known only here.

    Returns:
        ``(key path, string as written)`` of each string filled in.
    """
    if isinstance(node, Config):
        node = node._cfg_dict  # the ConfigDict behind a Config
    filled = []
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in list(items):
        if isinstance(value, str) and WORK_DIR_TOKEN in value:
            node[key] = value.replace(WORK_DIR_TOKEN, work_dir)
            filled.append((path + (key,), value))
        elif isinstance(value, (dict, list)):
            filled += fill_work_dir(value, work_dir, path + (key,))
    return filled


def save_config_with_templates(runner, cfg: Config) -> None:
    """Rewrite the config the runner saved in its work_dir with ``'{work_dir}'`` back in
    the strings :func:`load_run_config` filled in (rank 0).

    MMEngine saves the config as the run used it. A run started again from that file
    with another ``--work-dir`` would otherwise write its pseudo-labels into the first
    run's folder, and move that run's labels aside when the settings differ.

    Args:
        runner: the built runner (it has saved its config).
        cfg: the config :func:`load_run_config` returned.
    """
    templates = getattr(cfg, _TEMPLATES_ATTR, None)
    if not templates or get_rank() != 0:
        return
    saved = copy.deepcopy(runner.cfg)
    for path, template in templates:
        node = saved._cfg_dict
        try:
            for key in path[:-1]:
                node = node[key]
            if node[path[-1]] == template.replace(WORK_DIR_TOKEN, cfg.work_dir):
                node[path[-1]] = template
        except (KeyError, IndexError, TypeError):
            continue  # changed after loading: saved as the run used it
    name = osp.basename(cfg.filename) if cfg.filename else f'{runner.timestamp}.py'
    saved.dump(osp.join(runner.work_dir, name))


def enable_amp(cfg: Config) -> None:
    """Switch ``cfg.optim_wrapper`` to automatic mixed precision (``--amp``).

    MMEngine's ``AmpOptimWrapper`` needs an accelerator; on a CPU-only machine this
    stops with a message instead of its assertion from inside the runner.
    """
    from mmengine.device import get_device
    if get_device() == 'cpu':
        exit_with('--amp needs a GPU (or an NPU, MLU or MUSA device) and this machine has '
                  'none; train without --amp.')
    wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper_type == 'AmpOptimWrapper':
        print_log('AMP training is already enabled in your config.',
                  logger='current', level=logging.WARNING)
        return
    if wrapper_type != 'OptimWrapper':
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


def check_checkpoint_or_exit(path: str, option: str) -> Any:
    """Stop with a readable message if ``path`` is not a loadable checkpoint.

    Loads it as the runner will (``weights_only=True``, MMEngine's types allowed by
    :mod:`mmseg_saot.utils.compat`), so a missing, truncated or foreign file is
    reported here, naming ``option``, instead of as a traceback from inside the
    runner (whose torch message would suggest turning ``weights_only`` off).

    Args:
        path: the checkpoint file.
        option: where it came from, e.g. ``'CHECKPOINT'`` or ``'load_from'``.

    Returns:
        The loaded checkpoint, memory-mapped where the file allows (for
        :func:`check_checkpoint_fits_or_exit`, so the file is parsed once).
    """
    import pickle

    import torch
    if osp.isdir(path):
        exit_with(f'{option}: "{path}" is a folder; give the checkpoint file in it (e.g. '
                  f'{osp.join(path, "iter_<N>.pth")}).')
    if not osp.isfile(path):
        exit_with(f'{option}: checkpoint "{path}" does not exist.')
    try:
        return _load_weights_only(torch, path)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as err:
        reason = load_failure_reason(err)
        exit_with(f'{option}: "{path}" is not a readable checkpoint ({reason}). '
                  'Give a .pth written by tools/train.py (or any MMEngine checkpoint of '
                  'tensors); files holding other Python objects are refused, as '
                  'weights-only loading stays on.')


def _load_weights_only(torch, path: str):
    """``torch.load`` as the runner does, without reading the tensors' data.

    Zip checkpoints (torch's format since 1.6) are memory-mapped, so only the pickled
    structure is read and checked; the runner's own load then reads the weights once.
    Files in the legacy format cannot be mapped and are loaded in full.
    """
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except RuntimeError as err:
        if 'mmap can only be used' not in str(err):
            raise
        return torch.load(path, map_location='cpu', weights_only=True)


def check_checkpoint_fits_or_exit(model, checkpoint: Any, path: str, config: str,
                                  option: str = 'CHECKPOINT') -> None:
    """Stop if ``checkpoint`` (read from ``path``) does not hold every weight of ``model``.

    MMEngine loads checkpoints non-strictly: a checkpoint of another model, or of
    this one with other settings (classes, head width), only logs a warning, and the
    run then evaluates randomly initialised layers. Call this once the runner has
    built the model (wrappers such as DDP or the TTA model are looked through); it
    names the missing and the mismatched weights. Extra weights in the checkpoint
    are left to MMEngine's warning. Frozen parameters may be absent (the model keeps
    its own: head-only checkpoints fit, with or without ``DINOv2Backbone``'s
    ``save_frozen_weights``); any weight present must have the model's shape.

    Args:
        model: the built model.
        checkpoint: what :func:`check_checkpoint_or_exit` returned for ``path``.
        path: the checkpoint file, for the message.
        config: the config file, for the message.
        option: where the checkpoint came from, e.g. ``'CHECKPOINT'`` or ``'--resume'``.
    """
    import torch

    from mmseg_saot.models.backbones.dinov2 import VIT_DIGEST_KEY, frozen_weights_mismatch
    while isinstance(getattr(model, 'module', None), torch.nn.Module):
        model = model.module
    saved = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else {}
    saved = {key[len('module.'):] if key.startswith('module.') else key: value
             for key, value in saved.items()}
    expected = model.state_dict()
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    digests = [key for key in expected if key.endswith(VIT_DIGEST_KEY)]
    if any(isinstance(saved.get(key), torch.Tensor) and
           not torch.equal(saved[key].cpu(), expected[key].cpu()) for key in digests):
        exit_with(f'{option}: ' + frozen_weights_mismatch(f'"{path}"').replace(
            'model.backbone', f'{config} (with its --cfg-options)', 1))
    frozen.update(digests)  # older checkpoints have none: nothing to compare
    missing = [key for key in expected if key not in saved and key not in frozen]
    mismatched = [f'{key} ({tuple(saved[key].shape)} in the checkpoint, '
                  f'{tuple(value.shape)} in the model)' for key, value in expected.items()
                  if key in saved and getattr(saved[key], 'shape', None) != value.shape]
    if not missing and not mismatched:
        return
    problems = []
    if missing:
        problems.append(f'{len(missing)} of the model\'s {len(expected)} weights are missing '
                        f'({_first(missing)})')
    if mismatched:
        problems.append(f'{len(mismatched)} weights have another shape ({_first(mismatched)})')
    exit_with(f'{option}: "{path}" does not fit the model of {config}: '
              f'{"; ".join(problems)}. Use a checkpoint that tools/train.py wrote with this '
              'config and these --cfg-options (to resume: their --work-dir; after changing '
              'the model, start a new --work-dir).')


def _first(items, count: int = 3) -> str:
    shown = ', '.join(items[:count])
    return shown + (f', ... ({len(items) - count} more)' if len(items) > count else '')


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
        message = explain_data_read_failure(err, cfg)
        if message is None:
            raise
        exit_with(message)


@contextlib.contextmanager
def interrupt_exits(message: str = '') -> Iterator[None]:
    """Turn Ctrl-C (``KeyboardInterrupt``) into ``Interrupted. <message>`` on stderr
    and exit code 130 (the shell's code for SIGINT) instead of a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        print(f'Interrupted. {message}'.rstrip(), file=sys.stderr)
        sys.exit(130)
