"""A config file that changes a variable its base files had already used.

MMEngine reads each base file on its own: a variable (``stage1_iters``,
``saot_labeler``) is copied into the entries that use it there, and a child file that
sets the variable again changes the variable only. Those entries keep the base's
value unless the child sets them too, and the run goes on without a word.
:func:`stale_variable_warnings` finds them from the base files' source: which top-level
entries name the variable, directly, through other variables, or through
``{{_base_.name}}``.
"""
import ast
import os.path as osp
import re
from typing import Any, Dict, Iterable, List, Optional, Set

from mmengine.config import Config

from mmseg_saot.utils.build_errors import walk
from mmseg_saot.utils.cfg_option_keys import READ_KEYS, built_from

_BASE_REFERENCE = re.compile(r'\{\{\s*_base_\.([A-Za-z_]\w*)[\w.\[\]\'"]*\s*\}\}')


def stale_variable_warnings(config_path: str, cfg: Config) -> List[str]:
    """One sentence per variable that ``config_path`` sets but its bases had used.

    Args:
        config_path: the config file.
        cfg: the config loaded from it (before ``--cfg-options``).

    Returns:
        The warnings; empty where the file has no base, changes no used variable, or
        cannot be analysed (a lazy-import config, MMEngine helpers that changed).
    """
    try:
        return list(_stale_variables(config_path, cfg))
    except Exception:  # noqa: BLE001  (a check that cannot run must not stop the run)
        return []


def _stale_variables(config_path: str, cfg: Config) -> Iterable[str]:
    bases = _base_paths(config_path)
    if not bases:
        return
    own = _assignments(_source(config_path))
    base_values: Dict[str, object] = {}
    for base in bases:
        base_values.update(Config.fromfile(base).to_dict())
    uses = _uses(_base_chain(bases))
    for name in sorted(own):
        if name in READ_KEYS or name not in base_values or cfg.get(name) == base_values[name]:
            continue
        old = base_values[name]
        where: List[str] = []
        for key in sorted(_dependents(name, uses) & READ_KEYS):
            if key not in own:  # the base's entry, whole
                where += _old_value_paths(cfg, old, [key]) or [key]
            elif own[key] is not None:  # merged into: the parts the file does not set
                where += [path for path in _old_value_paths(cfg, old, [key])
                          if not _under(path[len(key) + 1:], own[key])]
        if where:
            yield _message(config_path, bases, name, old, cfg.get(name), where)


def _message(config_path: str, bases: List[str], name: str, old: Any, new: Any,
             where: List[str]) -> str:
    files = ', '.join(osp.basename(base) for base in bases)
    value = '' if isinstance(old, (dict, list, tuple)) else f' {_short(old)}'
    if isinstance(old, dict) and isinstance(new, dict):  # name the options it changes
        changed = [key for key in new if old.get(key) != new[key]]
        where = [f'{path}.{key}' for path in where for key in changed] or where
    keep = 'keeps' if len(where) == 1 else 'keep'
    return (f'{config_path} sets {name}, but {files} had already used its old value{value} '
            f'when read (MMEngine copies a variable where it is used): {", ".join(where)} '
            f'{keep} the old value. Set {"it" if len(where) == 1 else "them"} in '
            f'{config_path} too.')


def _old_value_paths(cfg: Config, old: Any, keys: List[str]) -> List[str]:
    """Dotted paths under ``keys`` that hold ``old`` or, for a string or a dict, a
    value built from it; numbers count only there, where the variable was used."""
    if isinstance(old, bool) or old is None or old == '' or old == [] or old == {}:
        return []
    return [path for key in keys for path, node in walk(cfg[key], key)
            if (node == old and not isinstance(node, bool)) or built_from(node, old)]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f'{text[:37]}...'


def _source(path: str) -> str:
    with open(path, encoding='utf-8') as f:
        return f.read()


def _base_paths(config_path: str) -> List[str]:
    """The files of the ``_base_`` list of ``config_path``, resolved (``mmseg::`` too)."""
    return [Config._get_cfg_path(base, config_path)[0]
            for base in Config._get_base_files(config_path)]


def _base_chain(bases: List[str]) -> List[str]:
    """``bases`` and, recursively, their own base files."""
    chain: List[str] = []
    pending = list(bases)
    while pending:
        path = pending.pop()
        if path not in chain:
            chain.append(path)
            pending.extend(_base_paths(path))
    return chain


def _assignments(source: str) -> Dict[str, Optional[Set[str]]]:
    """Top-level names a config file assigns: ``name -> the dotted entries its dict
    literal sets`` where the value is merged into the base's (``dict(...)`` or ``{...}``
    without ``_delete_``), ``None`` where it replaces it."""
    tree = ast.parse(_BASE_REFERENCE.sub(r'\1', source))
    return {target.id: _set_entries(node.value) for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)}


def _set_entries(value: ast.AST) -> Optional[Set[str]]:
    """Dotted entries a dict literal sets when merged (its non-dict leaves, and the
    nested dicts it replaces), or None for a value that replaces the base's whole."""
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and \
            value.func.id == 'dict' and not value.args:
        items = [(kw.arg, kw.value) for kw in value.keywords]
    elif isinstance(value, ast.Dict):
        items = [(k.value if isinstance(k, ast.Constant) else None, v)
                 for k, v in zip(value.keys, value.values)]
    else:
        return None
    entries: Set[str] = set()
    for key, item in items:
        if not isinstance(key, str) or key == '_delete_':
            return None  # **other, a computed key, or an explicit replacement
        nested = _set_entries(item)
        entries |= {f'{key}.{entry}' for entry in nested} if nested else {key}
    return entries


def _under(path: str, entries: Set[str]) -> bool:
    """Whether dotted ``path`` is one of ``entries`` or inside one."""
    return any(path == entry or path.startswith(f'{entry}.') for entry in entries)


def _uses(paths: Iterable[str]) -> Dict[str, Set[str]]:
    """``name -> top-level names whose value names it`` over the files in ``paths``
    (a ``{{_base_.name}}`` counts as naming ``name``)."""
    uses: Dict[str, Set[str]] = {}
    for path in paths:
        tree = ast.parse(_BASE_REFERENCE.sub(r'\1', _source(path)))
        for node in tree.body:
            if not isinstance(node, ast.Assign) or node.value is None:
                continue
            used = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)}
            for target in node.targets:
                if isinstance(target, ast.Name):
                    for name in used - {target.id}:
                        uses.setdefault(name, set()).add(target.id)
    return uses


def _dependents(name: str, uses: Dict[str, Set[str]]) -> Set[str]:
    """Top-level names computed from ``name``, directly or through other names."""
    found: Set[str] = set()
    pending = [name]
    while pending:
        for user in uses.get(pending.pop(), ()):
            if user not in found:
                found.add(user)
                pending.append(user)
    return found
