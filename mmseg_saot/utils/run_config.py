"""Load a run's config for the tools: ``--cfg-options``, the work_dir, ``'{work_dir}'``
in paths (filled in for the run, kept in the config the run saves)."""
import contextlib
import copy
import glob
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.dist import get_rank

from mmseg_saot.utils.cfg_option_keys import unread_key_problem
from mmseg_saot.utils.config_inheritance import stale_variable_warnings
from mmseg_saot.utils.atomic import atomic_write_bytes
from mmseg_saot.utils.cli import check_launcher_env_or_exit, ensure_folder_or_exit, exit_with
from mmseg_saot.utils.errors import error_reason

WORK_DIR_TOKEN = '{work_dir}'
_TEMPLATES_ATTR = '_work_dir_templates'  # on a Config object, outside its dict


def load_config(config_path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load a config file and apply ``--cfg-options``; a missing file stops with a message.

    Args:
        config_path (str): the config file.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
    """
    if osp.isdir(config_path):
        inside = sorted(glob.glob(osp.join(config_path, '*.py')))
        example = inside[0] if inside else osp.join('configs', 'saot', 'gta2cs.py')
        exit_with(f'config file "{config_path}" is a folder; give a config file, e.g. '
                  f'{example}.')
    if not osp.isfile(config_path):
        exit_with(f'config file "{config_path}" does not exist (configs live '
                  'under configs/saot/, e.g. configs/saot/gta2cs.py).')
    try:
        cfg = Config.fromfile(config_path)
    except Exception as err:  # the file's content: Python or YAML errors, missing bases
        exit_with(config_load_problem(config_path, err))
    if os.environ.get('RANK', '0') == '0':  # once under torchrun
        for warning in stale_variable_warnings(config_path, cfg):
            print(f'warning: {warning}', file=sys.stderr)
    if cfg_options:
        # PATH._delete_=True replaces PATH (a None, or a dict of other keys) with the
        # entries given under it: MMEngine's own way to write a dict there
        replaced = [key[:-len('._delete_')] for key in cfg_options
                    if key.endswith('._delete_')]
        for key in cfg_options:
            if any(key == f'{path}._delete_' or key.startswith(f'{path}.')
                   for path in replaced):
                continue
            problem = unread_key_problem(cfg, key, config_path) or list_index_problem(cfg, key)
            if problem:
                exit_with(f'--cfg-options {key}=...: {problem}.')
        try:
            cfg.merge_from_dict(cfg_options)
        except (TypeError, KeyError, ValueError) as err:  # a case the checks above miss
            exit_with(f'--cfg-options {" ".join(cfg_options)}: cannot be set in '
                      f'{config_path} ({error_reason(err)}).')
    return cfg


def list_index_problem(cfg: Config, key: str) -> Optional[str]:
    """Why a dotted ``--cfg-options`` key cannot name an entry of the config, or None.

    Catches what MMEngine reports as a bare TypeError or a KeyError that prints a whole
    list: an index past a list's end (``custom_hooks.3.type`` with three hooks), a name
    under a list (``param_scheduler.end``: a list takes an index), an entry of a tuple
    (``crop_size.0``: MMEngine asks for ``_delete_``, which no option can give), and a
    key under a value that is not a dict (``train_cfg.max_iters.x``).
    """
    node, path, parts = cfg, [], key.split('.')
    for at, part in enumerate(parts):
        where = '.'.join(path)
        if isinstance(node, tuple) and part.isdigit():  # MMEngine cannot set its entries
            return (f'{where} is the tuple {node!r}, whose entries cannot be set one by one; '
                    f'set the whole value, e.g. "{where}={node!r}" with that entry changed')
        if isinstance(node, (list, tuple)):
            if part.startswith('-') and part[1:].isdigit() and node:  # -1: not read
                index = len(node) - int(part[1:]) if int(part[1:]) <= len(node) else 0
                return (f'{where} is a list of {len(node)}, indexed from 0 (negative indexes '
                        f'are not read); e.g. ' + '.'.join([where, str(index)] + parts[at + 1:]))
            if not part.isdigit():
                return (f'{where} is a list of {len(node)}; name an entry by its index, '
                        f'e.g. {where}.0.{part}' if node else f'{where} is an empty list')
            index = int(part)
            if index >= len(node):
                return (f'{where} has {len(node)} entr{"y" if len(node) == 1 else "ies"} '
                        f'(0-{len(node) - 1}), not {index}' if node else
                        f'{where} is an empty list')
            node = node[index]
        elif isinstance(node, (dict, Config)):
            if part not in node:
                return None  # a new key: MMEngine adds it
            node = node[part]
        else:
            return (f'{where} is {node!r}, which has no entries; set {where}=... itself, '
                    f'or, to give it entries (a dict), add {where}._delete_=True beside '
                    f'{".".join(parts[:at + 1])}=...')
        path.append(part)
    return None


def config_load_problem(config_path: str, err: Exception) -> str:
    """One line saying why MMEngine could not load ``config_path``: the file and line of
    a syntax error (MMEngine reports ``<unknown>``), a missing ``_base_`` file, or the
    error's own words."""
    if isinstance(err, SyntaxError):
        where = f'config "{config_path}"'
        broken = _file_with_syntax_error(config_path)
        if broken and osp.abspath(broken) != osp.abspath(config_path):
            where += f' (its _base_ file {broken})'
        elif broken is None:
            where += ' (in one of its _base_ files)'
        return f'{where}, line {err.lineno}: syntax error: {err.msg}.'
    if isinstance(err, FileNotFoundError) and err.filename:
        return f'config "{config_path}": the file {err.filename} it names does not exist.'
    return f'config "{config_path}" cannot be loaded ({error_reason(err)}).'


def _file_with_syntax_error(config_path: str, depth: int = 0) -> Optional[str]:
    """The first file, ``config_path`` or one of its local ``_base_`` files (depth
    first), that does not parse; None where none is found (a base in a package,
    ``mmseg::...``, is not read)."""
    import ast
    try:
        with open(config_path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
    except SyntaxError:
        return config_path
    except (OSError, ValueError):
        return None
    for node in tree.body:
        if depth < 8 and isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == '_base_'
                for target in node.targets):
            try:
                bases = ast.literal_eval(node.value)
            except ValueError:
                return None
            for base in [bases] if isinstance(bases, str) else list(bases):
                if isinstance(base, str) and '::' not in base:
                    found = _file_with_syntax_error(
                        osp.join(osp.dirname(config_path), base), depth + 1)
                    if found:
                        return found
    return None


def default_work_dir(config_path: str) -> str:
    """``./work_dirs/<config name>``: the work_dir of a config that sets none."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


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
        cfg.work_dir = default_work_dir(config_path)
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


def config_dump_path(cfg: Config, work_dir: str) -> str:
    """Where MMEngine's runner saves ``cfg`` in ``work_dir``: the config file's name."""
    return osp.join(work_dir, osp.basename(cfg.filename)) if cfg.filename else ''


@contextlib.contextmanager
def file_kept(path: str) -> Iterator[None]:
    """Put back the bytes ``path`` held before the block (rank 0), if it held any.

    A test run's runner saves its config where the training run of the same config
    saved its own (``work_dir/<config name>``), as a config without training parts."""
    before = None
    if path and get_rank() == 0 and osp.isfile(path):
        with open(path, 'rb') as f:
            before = f.read()
    try:
        yield
    finally:
        if before is not None:
            with open(path, 'rb') as f:
                changed = f.read() != before
            if changed:
                atomic_write_bytes(path, before)


def save_config_with_templates(runner, cfg: Config, folder: Optional[str] = None) -> None:
    """Rewrite the config the runner saved in its work_dir with ``'{work_dir}'`` back in
    the strings :func:`load_run_config` filled in (rank 0); with ``folder``, save it
    there instead (a test run: its log folder).

    MMEngine saves the config as the run used it. A run started again from that file
    with another ``--work-dir`` would otherwise write its pseudo-labels into the first
    run's folder, and move that run's labels aside when the settings differ.

    Args:
        runner: the built runner (it has saved its config).
        cfg: the config :func:`load_run_config` returned.
    """
    templates = getattr(cfg, _TEMPLATES_ATTR, None) or []
    if (not templates and folder is None) or get_rank() != 0:
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
    saved.dump(osp.join(folder or runner.work_dir, name))
