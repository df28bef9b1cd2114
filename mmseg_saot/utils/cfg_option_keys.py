"""``--cfg-options`` keys that would change nothing: config variables and new keys.

MMEngine applies ``--cfg-options`` after the config file has been read. By then a
variable of the file (``crop_size``, ``data_root``, ``saot_labeler`` of the shipped
configs) has already been copied into the entries that use it, so setting it changes
only the variable, and a new top-level key that nothing reads is kept and ignored.
Both runs then go on as if the option had not been given. Only the keys that the
Runner (and MMSeg's test-time augmentation) read after loading can be set at top
level; :func:`unread_key_problem` says why any other one would be ignored and names
the entries to set instead.
"""
import difflib
from typing import Any, Callable, List, Optional

from mmseg_saot.utils.build_errors import walk

#: Top-level keys read after the config is loaded: ``Runner.from_cfg`` and
#: ``runner.cfg.get`` in MMEngine 0.10, MMSeg's test-time augmentation (``--tta``),
#: and the tools (``work_dir``).
READ_KEYS = frozenset({
    'model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
    'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper', 'param_scheduler',
    'val_evaluator', 'test_evaluator', 'default_hooks', 'custom_hooks', 'data_preprocessor',
    'load_from', 'env_cfg', 'log_processor', 'log_level', 'visualizer',
    'default_scope', 'randomness', 'experiment_name', 'model_wrapper_cfg', 'sync_bn',
    'find_unused_parameters', 'activation_checkpointing', 'efficient_conv_bn_eval',
    'compile', 'strategy', 'tta_model', 'tta_pipeline',
    'runner_type'})  # the tools build RUNNERS.build(cfg) when it is set

#: Keys the tools set after ``--cfg-options`` apply, so a value given there is
#: overwritten: what sets them instead.
FLAG_KEYS = {'resume': "tools/train.py's --resume",
             'launcher': "the --launcher of tools/train.py and tools/test.py (other tools "
                         "run as one process)"}

#: Keys read while the file is loaded, before ``--cfg-options`` apply.
LOAD_TIME_KEYS = frozenset({'custom_imports'})

_MAX_COPIES = 6


def unread_key_problem(cfg: Any, key: str, config_path: str = 'the config file') -> Optional[str]:
    """Why setting the dotted ``--cfg-options`` ``key`` would change nothing, or None.

    Args:
        cfg: the loaded config (before the option is merged).
        key: the option's key, e.g. ``saot_labeler.epsilon``.
        config_path: the file, named where the entries to set are not found.

    Returns:
        One sentence naming the entries to set instead, or None where the key is read.
    """
    top, _, rest = key.partition('.')
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    if top == 'data_preprocessor' and rest and isinstance(model, dict) and \
            model.get('data_preprocessor') is not None:
        return ('the model has its own data_preprocessor, which MMEngine uses instead of the '
                f'top-level one; set model.data_preprocessor.{rest}')
    if top in READ_KEYS:
        return None
    if top in FLAG_KEYS:
        return (f'{top} is set by the tools after --cfg-options apply, which overwrites '
                f'the value given here; use {FLAG_KEYS[top]}')
    if top in LOAD_TIME_KEYS:
        return (f'{top} is read while the config file is loaded, before --cfg-options '
                'apply; set it in the config file')
    if top not in cfg:
        match = difflib.get_close_matches(top, sorted(set(cfg.keys()) | READ_KEYS), n=1)
        if match and match[0] not in READ_KEYS:  # a variable: say where its value goes
            meant = unread_key_problem(cfg, f'{match[0]}.{rest}' if rest else match[0],
                                       config_path)
            if meant:
                return f'the config has no key {top!r}; did you mean {match[0]!r}? {meant}'
        hint = f' (did you mean {match[0]!r}?)' if match else ''
        return (f'the config has no key {top!r}{hint} and nothing reads a new one, so the '
                'option would be ignored')
    sub_key = f'.{rest}' if rest else ''
    copies = _read_paths(cfg, lambda node: node == cfg[top], cfg[top])
    if copies:
        return _variable_problem(top, 'set the entries that hold its value instead',
                                 [f'{path}{sub_key}' for path in copies])
    built = _read_paths(cfg, lambda node: built_from(node, cfg[top]), cfg[top])
    if built:
        return _variable_problem(top, 'set the entries built from it instead',
                                 [f'{path}{sub_key}' for path in built])
    return _variable_problem(top, f'set the entries that {config_path} computes from it '
                             'instead', [])


def _variable_problem(top: str, instead: str, paths: List[str]) -> str:
    shown = ', '.join(paths[:_MAX_COPIES])
    more = f' (and {len(paths) - _MAX_COPIES} more)' if len(paths) > _MAX_COPIES else ''
    listed = f': {shown}{more}' if paths else ''
    return (f'{top} is a variable of the config file: the entries that use it took its '
            f'value when the file was read, so changing it now changes nothing; '
            f'{instead}{listed}')


def built_from(node: Any, value: Any) -> bool:
    """Whether ``node`` looks built from ``value``: a string that extends it by a path
    (a folder under a root), or a dict with all its keys that differs in at most two of them
    (``dict(source_set, pipeline=...)``)."""
    if isinstance(value, str):  # 'data/demo' builds 'data/demo/gta5', not 'data/demo2'
        return len(value) > 2 and isinstance(node, str) and (
            node == value or node.startswith(value.rstrip('/') + '/'))
    if isinstance(value, dict) and isinstance(node, dict) and set(value) <= set(node):
        return sum(node[k] != v for k, v in value.items()) <= min(2, len(value) - 1)
    return False


def _read_paths(cfg: Any, matches: Callable[[Any], bool], value: Any) -> List[str]:
    """Dotted paths, under the keys that are read (:data:`READ_KEYS`), of the entries
    that ``matches``. ``value`` (the variable's) must be a string, a dict or a non-empty
    list: numbers are too common to tell a copy from a coincidence."""
    if isinstance(value, bool) or not isinstance(value, (str, dict, list, tuple)) or \
            not value:
        return []
    return [path for key in cfg.keys() if key in READ_KEYS
            for path, node in walk(cfg[key], key) if matches(node)]
