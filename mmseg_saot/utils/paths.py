"""Say why a folder cannot be created, in the words a user can act on."""
import os
import os.path as osp


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
    """Whether files can be created in the existing ``folder``."""
    return os.access(folder, os.W_OK | os.X_OK)
