"""Readable messages for config mistakes that MMEngine's registry build reports raw.

A misspelt option (``--cfg-options model.decode_head.num_clases=5``) or type
(``type='MLPHeadd'``) ends in ``build_from_cfg`` as a ``TypeError`` or ``KeyError``
traceback. :func:`explain_build_error` recognises the two, finds the config entry
that caused them and says what the component accepts, with the closest match.
"""
import difflib
import inspect
import re
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

from mmseg_saot.utils.config_types import has_type

# The frame read is mmengine.registry.build_from_cfg's (mmengine 0.10: its locals
# obj_type, obj_cls, args, registry); where a name is missing, the error is left as it is.
_BUILD_FUNCTION = 'build_from_cfg'
_UNEXPECTED = re.compile(r"got an unexpected keyword argument '(\w+)'")
_MISSING = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.+)$")


def _build_frames(err: BaseException) -> List[Tuple[dict, bool]]:
    """``(locals, raised_there)`` of each ``build_from_cfg`` frame of the traceback,
    innermost last; ``raised_there``: the error was raised in that very frame.

    A call with bad keyword arguments fails in the caller's frame, before the
    constructor runs.
    """
    frames, tb = [], err.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == _BUILD_FUNCTION:
            frames.append((dict(tb.tb_frame.f_locals), tb.tb_next is None))
        tb = tb.tb_next
    return frames


def _raised_in_build(err: BaseException) -> Optional[dict]:
    """Locals of the build whose config caused ``err``, or None.

    Either the error was raised in ``build_from_cfg`` itself, or a constructor
    passed an unexpected keyword on to its base class (``**kwargs``): then the
    innermost build whose arguments hold that keyword. Other errors from inside a
    constructor are not config mistakes of this kind.
    """
    frames = _build_frames(err)
    if not frames:
        return None
    build, raised_there = frames[-1]
    if raised_there:
        return build
    unexpected = _UNEXPECTED.search(str(err)) if isinstance(err, TypeError) else None
    if unexpected:
        for build, _ in reversed(frames):
            if unexpected.group(1) in (build.get('args') or {}):
                return build
    return None


def walk(node: Any, path: str = '') -> Iterator[Tuple[str, Any]]:
    """``(dotted path, node)`` of ``node`` and every dict entry and list item under it
    (paths in ``--cfg-options`` style)."""
    yield path, node
    if isinstance(node, dict):
        children = node.items()
    elif isinstance(node, (list, tuple)):
        children = enumerate(node)
    else:
        return
    for name, child in children:
        yield from walk(child, f'{path}.{name}' if path else str(name))


def find_config_entry(cfg: Any, type_name: str, keys: List[str],
                      lacking: Sequence[str] = ()) -> Optional[str]:
    """Dotted path (``--cfg-options`` style) of the first entry of type ``type_name``
    holding every key of ``keys`` and lacking one of ``lacking`` (an entry of that type
    that lacks a required option is the one at fault); None if there is none."""
    if cfg is None:
        return None
    root = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    for path, node in walk(root):
        if (has_type(node, type_name) and all(key in node for key in keys)
                and (not lacking or any(key not in node for key in lacking))):
            return path
    return None


def _options(obj_cls: Any, drops_kwargs: Sequence[type] = ()) -> Tuple[List[str], bool]:
    """Keyword options of ``obj_cls``, with those its ``**kwargs`` pass to base classes,
    and whether the chain ends open (a ``**kwargs`` that no base class names).
    ``drops_kwargs``: classes known to swallow their ``**kwargs`` (the chain ends there)."""
    owners = obj_cls.__mro__ if inspect.isclass(obj_cls) else (obj_cls,)
    names: List[str] = []
    for owner in owners:
        if owner is object:
            break
        try:
            signature = inspect.signature(owner.__init__ if inspect.isclass(owner) else owner)
        except (TypeError, ValueError):
            continue
        params = signature.parameters.values()
        names += [p.name for p in params if p.name not in names and p.name != 'self' and
                  p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if owner in drops_kwargs or not any(p.kind == p.VAR_KEYWORD for p in params):
            return names, False  # nothing passes on to the next base
    return names, True


def _parameters(obj_cls: Any) -> List[str]:
    """Keyword options of ``obj_cls``, with those its ``**kwargs`` pass to base classes."""
    return _options(obj_cls)[0]


def takes_option(cfg: Mapping, registry: Any, option: str) -> bool:
    """Whether the registered type of the component config ``cfg`` names ``option`` in
    its signature (or its base classes'); False for a type not registered."""
    obj_type = cfg.get('type')
    obj_cls = registry.get(obj_type) if isinstance(obj_type, str) else obj_type
    return obj_cls is not None and option in _parameters(obj_cls)


def component_config_problem(cfg: Mapping, registry: Any, entry: str,
                             drops_kwargs: Sequence[type] = ()) -> Optional[str]:
    """Check a component config before it is built, as far as its signature tells.

    Args:
        cfg: the component's config, ``dict(type=..., **options)``.
        registry: the MMEngine registry it is built from.
        entry: how the message names the config entry (``'SAOTPseudoLabelHook: source'``).
        drops_kwargs: classes whose ``**kwargs`` are accepted and ignored (MMSeg's
            ``IoUMetric``): options that reach them are unknown.

    Returns:
        A message for an unregistered ``type`` or an option the type does not take
        (with the closest match and the list of options), or None. A type whose
        ``**kwargs`` reach no base class that names them is not checked for options.
    """
    obj_type = cfg.get('type')
    if isinstance(obj_type, str):
        obj_cls = registry.get(obj_type)
        if obj_cls is None:
            return _unregistered(registry, obj_type, f'{entry}.type')
    elif callable(obj_type):
        obj_cls, obj_type = obj_type, getattr(obj_type, '__name__', str(obj_type))
    else:
        return f'{entry} needs a type (dict(type=..., ...)), got {dict(cfg)!r}.'
    params, open_ended = _options(obj_cls, drops_kwargs)
    unknown = [key for key in cfg if key not in ('type', '_scope_') and key not in params]
    if not unknown or open_ended:
        return None
    takes = f'It takes: {", ".join(params)}.' if params else 'It takes no options.'
    return (f'{entry}.{unknown[0]}: {obj_type} has no option {unknown[0]!r}.'
            f'{did_you_mean(unknown[0], params)} {takes}')


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """``" Did you mean 'x'?"`` for the closest of ``choices`` to ``word``, or ``''``."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f' Did you mean {match[0]!r}?' if match else ''


def unknown_option_hint(message: str, obj_cls: Any) -> str:
    """For a ``got an unexpected keyword argument 'x'`` ``message`` of building
    ``obj_cls``: the closest option it takes and the list of them; else ``''``."""
    unexpected = _UNEXPECTED.search(message)
    if not unexpected:
        return ''
    params = _parameters(obj_cls)
    accepted = f' It takes: {", ".join(params)}.' if params else ''
    return f'{did_you_mean(unexpected.group(1), params)}{accepted}'


def explain_build_error(err: BaseException, cfg: Any = None,
                        config_path: str = 'the config') -> Optional[str]:
    """A message for a misspelt option or type of a registry-built component.

    Args:
        err: the exception the build raised.
        cfg: the run's config, to name the entry (optional).
        config_path: the config file, for the message.

    Returns:
        The message, or None if ``err`` is not such a mistake (re-raise it then).
    """
    build = _raised_in_build(err)
    if build is None:
        return None
    if isinstance(err, KeyError):
        return _unknown_type(build, cfg, config_path)
    if isinstance(err, TypeError):
        return _bad_arguments(str(err), build, cfg, config_path)
    return None


def _unknown_type(build: dict, cfg: Any, config_path: str) -> Optional[str]:
    """``type='MLPHeadd'``: not in the registry the build looked in."""
    registry, obj_type = build.get('registry'), build.get('obj_type')
    if registry is None or not isinstance(obj_type, str):
        return None
    where = find_config_entry(cfg, obj_type, [])
    entry = f'{where}.type' if where else 'type'
    return f'{config_path}: {_unregistered(registry, obj_type, entry)}'


def _unregistered(registry: Any, obj_type: str, entry: str) -> str:
    """``<entry>='X' is not a registered <scope>::<registry> type ...`` with the closest name."""
    names = sorted(set(registry.module_dict) |
                   set(getattr(getattr(registry, 'parent', None), 'module_dict', {})))
    return (f'{entry}={obj_type!r} is not a registered {registry.scope}::{registry.name} '
            f'type (check the spelling, or add the module that registers it to '
            f'custom_imports).{did_you_mean(obj_type, names)}')


def _bad_arguments(message: str, build: dict, cfg: Any, config_path: str) -> Optional[str]:
    """An option the component does not take, or one it needs and did not get."""
    obj_type = build.get('obj_type')
    type_name = obj_type if isinstance(obj_type, str) else getattr(obj_type, '__name__', None)
    if type_name is None:
        return None
    params = _parameters(build.get('obj_cls'))
    unexpected, missing = _UNEXPECTED.search(message), _MISSING.search(message)
    if unexpected:
        key = unexpected.group(1)
        where = find_config_entry(cfg, type_name, [key])
        entry = f'{where}.{key}' if where else key
        accepted = f' It takes: {", ".join(params)}.' if params else ''
        return (f'{config_path}: {entry}: {type_name} has no option {key!r} (from the config '
                f'or --cfg-options).{did_you_mean(key, params)}{accepted}')
    if missing:
        names = re.findall(r"'(\w+)'", missing.group(1))
        where = find_config_entry(cfg, type_name, [], lacking=names)
        entry = f'{where}: ' if where else ''
        return (f'{config_path}: {entry}{type_name} needs {", ".join(names)}; set it in the '
                f'config or with --cfg-options {(where + ".") if where else ""}{names[0]}=...')
    return None
