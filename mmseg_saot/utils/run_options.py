"""Checks of the runner options a user most often changes, before the runner is built.

MMEngine and torch reject a bad value of these only when the runner builds the part
that reads it (a DataLoader, the optimizer, a loop, a hook), with a traceback from deep
inside: ``batch_size should be a positive integer value``, ``integer modulo by zero``
(``val_interval=0``), ``end should be larger than begin`` (``max_iters=0``). Checked
on the merged config, the same values give one message naming the config key.
"""
from typing import Iterator, Mapping, Optional

from mmseg_saot.utils.errors import ConfigError, integer_problem, number_problem

TRAIN_DATALOADERS = ('train_dataloader', 'val_dataloader')


def check_run_options(cfg: Mapping, source: str, training: bool = True) -> None:
    """Raise :class:`ConfigError` naming every bad runner option of ``cfg``.

    Args:
        cfg: the merged config (``--cfg-options`` applied).
        source: what the message names first (the config file).
        training: check what ``runner.train()`` reads (train and val dataloaders, loop,
            optimizer, schedulers, logger); else what ``runner.test()`` reads (the
            test dataloader).
    """
    problems = list(_train_problems(cfg) if training else _test_problems(cfg))
    if problems:
        raise ConfigError(f'{source}: {"; ".join(problems)} (from the config or '
                          '--cfg-options).')


def missing_test_loop_parts(cfg: Mapping) -> Optional[str]:
    """What ``tools/test.py`` misses of the test loop's three keys, or None: checked
    before its flags (``--out``, ``--tta``) reach into them."""
    return next(_loop_parts_problem(cfg, 'test', required=True), None)


def _loop_parts_problem(cfg: Mapping, split: str, required: bool) -> Iterator[str]:
    """MMEngine builds a val or test loop from three keys: all set, or all unset where the
    loop is not ``required`` (the runner refuses a mix when it is built)."""
    keys = [f'{split}_dataloader', f'{split}_cfg', f'{split}_evaluator']
    missing = [key for key in keys if cfg.get(key) is None]
    if missing and (required or len(missing) < len(keys)):
        needs = 'tools/test.py needs' if required else 'the runner needs all or none of'
        yield f'{needs} {", ".join(keys)}; {" and ".join(missing)} not set'


def _test_problems(cfg: Mapping) -> Iterator[str]:
    yield from _loop_parts_problem(cfg, 'test', required=True)
    yield from _dataloader_problems(cfg, 'test_dataloader')
    yield from _class_count_problems(cfg, ('test',))
    yield from _evaluator_problems(cfg, ('test',))
    yield from _hook_problems(cfg)
    yield from _unscorable_test_problem(cfg)


def _evaluator_problems(cfg: Mapping, splits) -> Iterator[str]:
    """A misspelt metric option: MMSeg's ``IoUMetric`` takes ``**kwargs`` and ignores
    them, so ``test_evaluator.formatonly=True`` would run and score as if unset."""
    from mmseg.evaluation import IoUMetric
    from mmseg.registry import METRICS
    metrics = []
    for split in splits:
        key = f'{split}_evaluator'
        evaluator = cfg.get(key)
        metrics += ([(key, evaluator)] if isinstance(evaluator, Mapping) else
                    [(f'{key}.{i}', m) for i, m in enumerate(evaluator or [])])
    yield from _option_problems(metrics, METRICS, drops_kwargs=(IoUMetric,))


def _hook_problems(cfg: Mapping) -> Iterator[str]:
    """A misspelt hook option. MMEngine's ``CheckpointHook`` keeps unknown options in
    ``**kwargs`` and hands them to ``Runner.save_checkpoint``, which takes none:
    ``default_hooks.checkpoint.intervl=2`` trained until the first checkpoint and then
    stopped with a TypeError from inside the runner."""
    from mmengine.hooks import CheckpointHook
    from mmseg.registry import HOOKS
    default_hooks = cfg.get('default_hooks') or {}
    hooks = [(f'default_hooks.{name}', hook) for name, hook in default_hooks.items()]
    hooks += [(f'custom_hooks.{i}', hook) for i, hook in enumerate(cfg.get('custom_hooks') or [])]
    yield from _option_problems(hooks, HOOKS, drops_kwargs=(CheckpointHook,))


def _option_problems(entries, registry, drops_kwargs) -> Iterator[str]:
    """Unknown options of the ``(config key, component config)`` ``entries`` whose type
    ``registry`` knows (MMEngine names an unknown type itself)."""
    from mmseg_saot.utils.build_errors import component_config_problem
    for entry, component in entries:
        registered = isinstance(component, Mapping) and \
            isinstance(component.get('type'), str) and \
            registry.get(component['type']) is not None
        problem = registered and component_config_problem(component, registry, entry,
                                                          drops_kwargs=drops_kwargs)
        if problem:
            yield problem.rstrip('.')


def _unscorable_test_problem(cfg: Mapping) -> Iterator[str]:
    """A test set whose pipeline reads no label maps can only be predicted: scoring it
    would fail after the whole inference (MMSeg's IoUMetric needs ``gt_sem_seg``)."""
    from mmseg_saot.datasets.layout import leaf_datasets, loads_labels
    evaluator = cfg.get('test_evaluator')
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    if not isinstance(evaluator, Mapping) or evaluator.get('format_only') or not dataset:
        return
    if not any(loads_labels(leaf) for leaf in leaf_datasets(dataset)):
        yield ("test_dataloader.dataset's pipeline reads no label maps (no LoadAnnotations), "
               'so there is nothing to score: add LoadAnnotations to it, or only predict '
               'with test_evaluator.format_only=True test_evaluator.output_dir=DIR')


def _class_count_problems(cfg: Mapping, splits) -> Iterator[str]:
    from mmseg_saot.datasets.class_counts import class_count_problems
    yield from class_count_problems(cfg, splits)


def _train_problems(cfg: Mapping) -> Iterator[str]:
    for split in ('val', 'test'):
        yield from _loop_parts_problem(cfg, split, required=False)
    for name in TRAIN_DATALOADERS:
        yield from _dataloader_problems(cfg, name)
    yield from _class_count_problems(cfg, ('train', 'val'))
    yield from _evaluator_problems(cfg, ('val', 'test'))
    yield from _hook_problems(cfg)
    loop = cfg.get('train_cfg') or {}
    for key in ('max_iters', 'max_epochs', 'val_interval'):
        if key in loop:
            yield from _int_problem(f'train_cfg.{key}', loop[key], minimum=1)
    if 'val_begin' in loop:
        yield from _int_problem('train_cfg.val_begin', loop['val_begin'], minimum=0)
    optimizer = (cfg.get('optim_wrapper') or {}).get('optimizer') or {}
    for key in ('lr', 'weight_decay'):
        if key in optimizer:
            yield from _number_problem(f'optim_wrapper.optimizer.{key}', optimizer[key])
    logger = (cfg.get('default_hooks') or {}).get('logger') or {}
    if 'interval' in logger:
        yield from _int_problem('default_hooks.logger.interval', logger['interval'], minimum=1)
    yield from _scheduler_problems(cfg.get('param_scheduler'))
    yield from _runner_setting_problems(cfg)


#: the keys MMEngine's Runner.setup_env reads from env_cfg (it ignores any other)
ENV_CFG_KEYS = ('cudnn_benchmark', 'mp_cfg', 'dist_cfg', 'resource_limit')


def _runner_setting_problems(cfg: Mapping) -> Iterator[str]:
    """Misspelt keys of the dicts the Runner reads itself, not through a registry:
    ``randomness`` and ``log_processor`` raised a TypeError from inside MMEngine,
    ``env_cfg`` ignored them; and a ``randomness.seed`` that is no integer."""
    import inspect

    from mmengine.runner import LogProcessor, Runner
    randomness = cfg.get('randomness') or {}
    takes = [p for p in inspect.signature(Runner.set_randomness).parameters if p != 'self']
    yield from _unknown_keys('randomness', randomness, takes)
    seed = randomness.get('seed')
    if seed is not None:
        yield from _int_problem('randomness.seed', seed, minimum=0)
    processor = cfg.get('log_processor') or {}
    if isinstance(processor, Mapping) and 'type' not in processor:  # a LogProcessor
        takes = [p for p in inspect.signature(LogProcessor).parameters if p != 'kwargs']
        yield from _unknown_keys('log_processor', processor, takes)
    yield from _unknown_keys('env_cfg', cfg.get('env_cfg') or {}, ENV_CFG_KEYS)


def _unknown_keys(name: str, settings, takes) -> Iterator[str]:
    from mmseg_saot.utils.build_errors import did_you_mean
    if not isinstance(settings, Mapping):
        return
    for key in settings:
        if key not in takes:
            yield (f'{name}.{key} is not a setting MMEngine reads.{did_you_mean(key, takes)} '
                   f'It takes: {", ".join(takes)}')


def _dataloader_problems(cfg: Mapping, name: str) -> Iterator[str]:
    loader = cfg.get(name)
    if not isinstance(loader, Mapping):
        return
    if 'batch_size' in loader:
        yield from _int_problem(f'{name}.batch_size', loader['batch_size'], minimum=1)
    workers = loader.get('num_workers', 0)
    yield from _int_problem(f'{name}.num_workers', workers, minimum=0)
    if loader.get('persistent_workers') and workers == 0:
        yield (f'{name}.persistent_workers=True needs {name}.num_workers >= 1, or set it '
               'to False')


def _scheduler_problems(schedulers) -> Iterator[str]:
    if isinstance(schedulers, Mapping):
        schedulers = [schedulers]
    for index, scheduler in enumerate(schedulers or []):
        if not isinstance(scheduler, Mapping):
            continue  # MMEngine reports a scheduler that is not a config itself
        begin, end = scheduler.get('begin', 0), scheduler.get('end')
        if isinstance(begin, (int, float)) and isinstance(end, (int, float)) and end <= begin:
            yield (f'param_scheduler[{index}] ({scheduler.get("type")}) ends at {end}, not '
                   f'after its begin {begin}')


def _int_problem(key: str, value, minimum: int) -> Iterator[str]:
    problem = integer_problem(key, value, minimum)
    if problem:
        yield problem


def _number_problem(key: str, value) -> Iterator[str]:
    problem = number_problem(key, value, at_least=0)
    if problem:
        yield problem
