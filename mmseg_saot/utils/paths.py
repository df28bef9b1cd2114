"""Create the folders a user names, and say why one cannot be, in words a user can act on;
the rules for naming a free path and for reusing an output that is up to date."""
import os
import os.path as osp
import tempfile
import time
from typing import List, Optional, Sequence

from mmseg_saot.utils.errors import UserInputError


def why_not_creatable(folder: str, err: OSError) -> str:
    """The reason ``os.makedirs(folder)`` failed with ``err``.

    A file standing where a folder of the path should be (``/tmp/run`` is a file and
    the folder is ``/tmp/run/out``) is named; otherwise the system's reason.
    """
    path = osp.abspath(folder)
    while path and not osp.exists(path):
        parent = osp.dirname(path)
        if parent == path:
            break
        path = parent
    if osp.exists(path) and not osp.isdir(path):
        return f'{path} is a file'
    return err.strerror or type(err).__name__


def writable_folder(folder: str) -> bool:
    """Whether files can be created in the existing ``folder``: one is (and is removed
    again), since permission bits do not tell for root or on a read-only file system."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder, prefix='.write-check-'):
            return True
    except OSError:
        return False


def ensure_folder(folder: str, option: str) -> None:
    """Create ``folder`` with its parents, or raise :class:`UserInputError` naming
    ``option`` (where the path came from) and the reason.

    Args:
        folder: the folder.
        option: the config option or command-line flag that gave it.
    """
    if osp.exists(folder) and not osp.isdir(folder):
        raise UserInputError(f'{option}: {folder} exists and is not a folder; pick another '
                             'path.')
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as err:
        raise UserInputError(f'{option}: cannot create the folder {folder} '
                             f'({why_not_creatable(folder, err)}); pick a writable path.') \
            from None
    if not writable_folder(folder):
        raise UserInputError(f'{option}: the folder {folder} is not writable; pick a writable '
                             'path.')


def unused_path(path: str) -> str:
    """``path`` if nothing is there, else the first free ``path.1``, ``path.2``, ... (a
    folder that something is moved aside to, never over an earlier one)."""
    suffix = 0
    while osp.exists(path if not suffix else f'{path}.{suffix}'):
        suffix += 1
    return path if not suffix else f'{path}.{suffix}'


def move_aside(folder: str, names: Sequence[str],
               stamp_from: Optional[str] = None) -> Optional[str]:
    """Move the entries ``names`` of ``folder`` that exist into a new
    ``folder/earlier-<mtime of stamp_from>/`` (``.1``, ``.2``, ... if that is taken), so
    that a new run's outputs are not mixed with an earlier run's and nothing is lost.

    Args:
        folder: the output folder.
        names: file or folder names inside ``folder``, each moved whole.
        stamp_from: the name, among ``names``, whose modification time names the new
            folder (the earlier run's time); the first name found if None or absent.

    Returns:
        The new folder, or None if none of ``names`` was there (nothing moved).
    """
    found: List[str] = [name for name in names if osp.lexists(osp.join(folder, name))]
    if not found:
        return None
    stamped = stamp_from if stamp_from in found else found[0]
    # the entry itself (lstat): a broken symlink among them has no target to stat
    when = time.localtime(os.lstat(osp.join(folder, stamped)).st_mtime)
    earlier = unused_path(osp.join(folder, f'earlier-{time.strftime("%Y%m%d_%H%M%S", when)}'))
    os.makedirs(earlier)
    for name in found:
        os.replace(osp.join(folder, name), osp.join(earlier, name))
    return earlier


def is_up_to_date(output: str, sources: Sequence[str]) -> bool:
    """Whether ``output`` exists and was modified no earlier than each of ``sources``
    (``mtime >=``): the dataset converters' rule for keeping an output they wrote
    before instead of writing it again. A missing source counts as newer (the output
    is written again, and the converter then names the missing file).

    Args:
        output: the file a converter writes.
        sources: the files it is made from.
    """
    try:
        written = os.stat(output).st_mtime_ns
        return all(os.stat(source).st_mtime_ns <= written for source in sources)
    except OSError:
        return False
