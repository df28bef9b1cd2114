"""Which checkpoint of a work_dir a run would continue from.

MMEngine's ``CheckpointHook`` writes ``<work_dir>/last_checkpoint`` (the path of the
newest checkpoint, non-atomically) after each save, and names checkpoints by its
``filename_tmpl`` (``iter_{}.pth`` for iteration-based runs).
"""
import glob
import os.path as osp
import re
from typing import Optional, Sequence

DEFAULT_TEMPLATES = ('iter_{}.pth', 'epoch_{}.pth')


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path ``work_dir/last_checkpoint`` names; ``''`` if that file is empty (a run
    stopped while writing it), None if there is none."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip()


def newest_checkpoint(work_dir: str,
                      templates: Sequence[str] = DEFAULT_TEMPLATES) -> Optional[str]:
    """The checkpoint of ``work_dir`` with the largest number, by the first template
    that matches any file (``'{}'`` stands for the number), or None.

    Args:
        work_dir: the run folder.
        templates: checkpoint file name templates, tried in order (a CheckpointHook's
            ``filename_tmpl`` first, where the config sets one).
    """
    for template in templates:
        pattern = re.compile(re.escape(template).replace(re.escape('{}'), r'(\d+)'))
        found = []
        for path in glob.glob(osp.join(glob.escape(work_dir), '*')):
            match = pattern.fullmatch(osp.basename(path))
            if match:
                found.append((int(match.group(1)), path))
        if found:
            return max(found)[1]
    return None
