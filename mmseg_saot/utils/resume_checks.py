"""What a resume would silently undo: the config's optimizer and schedule changes.

MMEngine's resume restores the checkpoint's optimizer state (its type's parameter
groups, learning rates) and each parameter scheduler's ``begin``, ``end`` and base
values over the config's, pairing schedulers by position. A run resumed with a longer
``param_scheduler.N.end`` therefore keeps the old schedule (and trains at its final
rate past the old end), an added scheduler is dropped, and another optimizer type
fails at the first step with a ``KeyError`` from inside torch.
"""
from typing import Any, List, Optional

from mmseg_saot.utils.checkpoint_checks import saved_config
from mmseg_saot.utils.config_types import type_name


def resume_change_problems(checkpoint: dict, cfg: Any) -> List[str]:
    """The optimizer and schedule settings of ``cfg`` that differ from ``checkpoint``'s.

    Args:
        checkpoint: a loaded MMEngine checkpoint (``param_schedulers``, ``meta['cfg']``).
        cfg: the run's config.

    Returns:
        One ``'<option>: <config> in the config, <checkpoint> in the checkpoint'``
        per difference; empty when there is none, or nothing to compare.
    """
    max_iters = (cfg.get('train_cfg') or {}).get('max_iters')
    problems = _schedule_problems(checkpoint.get('param_schedulers'),
                                  cfg.get('param_scheduler'), max_iters)
    saved_type = _saved_optimizer_type(checkpoint)
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    if saved_type and optimizer.get('type') is not None and \
            type_name(optimizer['type']) != saved_type:
        problems.append(f"optim_wrapper.optimizer.type: {type_name(optimizer['type'])} in "
                        f'the config, {saved_type} in the checkpoint')
    return problems


def _schedule_problems(saved: Any, configured: Any, max_iters: Optional[int]) -> List[str]:
    """Differences of the schedulers' count and iteration-based ``begin``/``end``. An
    ``end`` left out is ``max_iters``, as MMEngine sets it, and counts only when it is
    larger than the saved one: a smaller ``max_iters`` just stops the run early, on the
    schedule it had."""
    if not isinstance(saved, list) or configured is None:
        return []  # a dict of schedulers per optimizer, or none: not compared
    configured = list(configured) if isinstance(configured, (list, tuple)) else [configured]
    if len(configured) != len(saved):
        return [f'param_scheduler: {len(configured)} schedulers in the config, '
                f'{len(saved)} in the checkpoint']
    problems = []
    for index, (option, state) in enumerate(zip(configured, saved)):
        if not isinstance(state, dict) or option.get('by_epoch', True) or \
                state.get('by_epoch', True):
            continue  # epoch-based ends are converted to iterations: not compared
        for key, default in (('begin', 0), ('end', max_iters)):
            value = option.get(key, default)
            if value is None or key not in state or value == state[key]:
                continue
            if key not in option and value < state[key]:
                continue  # a smaller max_iters stops the run early on its schedule
            note = '' if key in option else ' (train_cfg.max_iters)'
            problems.append(f'param_scheduler.{index}.{key}: {value} in the config{note}, '
                            f'{state[key]} in the checkpoint')
    return problems


def _saved_optimizer_type(checkpoint: dict) -> Optional[str]:
    """The optimizer type of the config saved in ``checkpoint['meta']['cfg']``, if any."""
    saved = saved_config(checkpoint)
    if saved is None:
        return None
    optimizer = (saved.get('optim_wrapper') or {}).get('optimizer') or {}
    return type_name(optimizer['type']) if optimizer.get('type') is not None else None
