"""Which checkpoint of a work_dir a run would continue from.

MMEngine's ``CheckpointHook`` writes ``<work_dir>/last_checkpoint`` (the path of the
newest checkpoint, non-atomically) after each save, and names checkpoints by its
``filename_tmpl`` (``iter_{}.pth`` for iteration-based runs).
"""
import glob
import os.path as osp
import re
from typing import List, Optional, Sequence, Union

DEFAULT_TEMPLATES = ('iter_{}.pth', 'epoch_{}.pth')


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path ``work_dir/last_checkpoint`` names; ``''`` if that file is empty (a run
    stopped while writing it), None if there is none."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip()


def newest_checkpoint(work_dir: Union[str, Sequence[str]],
                      templates: Sequence[str] = DEFAULT_TEMPLATES) -> Optional[str]:
    """The checkpoint of ``work_dir`` with the largest number, by the first template
    that matches any file (``'{}'`` stands for the number), or None.

    Args:
        work_dir: the run folder, or the folders its checkpoints may be in (the
            CheckpointHook's ``out_dir/<work_dir name>`` besides the work_dir).
        templates: checkpoint file name templates, tried in order (a CheckpointHook's
            ``filename_tmpl`` first, where the config sets one).
    """
    folders = [work_dir] if isinstance(work_dir, str) else list(work_dir)
    for template in templates:
        pattern = re.compile(re.escape(template).replace(re.escape('{}'), r'(\d+)'))
        found = []
        for folder in folders:
            for path in glob.glob(osp.join(glob.escape(folder), '*')):
                match = pattern.fullmatch(osp.basename(path))
                if match:
                    found.append((int(match.group(1)), path))
        if found:
            return max(found)[1]
    return None


def checkpoint_folders(cfg, work_dir: str) -> List[str]:
    """Where a run's CheckpointHook saves: ``work_dir``, and with its ``out_dir`` set,
    ``out_dir/<work_dir name>`` (MMEngine's layout) too."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    out_dir = hook.get('out_dir') if isinstance(hook, dict) else None
    folders = [work_dir]
    if out_dir:
        folders.append(osp.join(out_dir, osp.basename(osp.normpath(work_dir))))
    return folders
