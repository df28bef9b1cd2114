"""Import the scripts under ``tools/`` in tests (they are not a package)."""
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Union

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool(path: Union[str, Path]) -> ModuleType:
    """Import one script as a fresh module.

    Args:
        path: the script, absolute or relative to the repository root.
    """
    path = REPO_ROOT / path
    name = '_'.join(path.relative_to(REPO_ROOT).with_suffix('').parts)
    spec = importlib.util.spec_from_file_location(f'{name}_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_tool_part(name: str) -> ModuleType:
    """Import a module of a package under ``tools/`` (e.g. ``'ot_benchmark.block'``), as
    its script does: ``tools/`` is appended to ``sys.path``, so that it shadows nothing."""
    tools = str(REPO_ROOT / 'tools')
    if tools not in sys.path:
        sys.path.append(tools)
    return importlib.import_module(name)
