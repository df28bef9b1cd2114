"""Whole-or-nothing file writes: a temporary file in the same folder, then a rename.

``os.replace`` is atomic on POSIX, so a reader (another rank, a resumed run) sees the
old file or the new one, never a partial one, even when the writer is killed; a write
that fails (a full disk, an object that cannot be saved) leaves no temporary behind.
The data reaches the disk (``fsync``) before the rename, and the folder after it, so
that a power loss cannot leave the new name on an empty file, nor lose the rename; a symlink is written through (its target is
replaced), and a file that existed keeps its permissions.
"""
import io
import os
import os.path as osp
import re
import uuid
from typing import Any

import torch


#: The name ``atomic_write_bytes`` gives its temporary: ``<file>.<pid>.<8 hex>.tmp``. One
#: left over is a write a killed process cut short.
TEMPORARY_NAME = re.compile(r'.+\.\d+\.[0-9a-f]{8}\.tmp')


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (creating its folder) through a temporary file."""
    path = osp.realpath(path) if osp.islink(path) else path
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    tmp = f'{path}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if osp.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    _sync_folder(osp.dirname(path) or '.')


def _sync_folder(folder: str) -> None:
    """fsync ``folder``'s entry list, so that the rename itself survives a power loss
    (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode('utf-8'))


def atomic_write_png(path: str, image: Any) -> None:
    """Encode ``image`` as PNG with OpenCV (uint8/uint16, ``(H, W)`` or BGR ``(H, W, 3)``)
    and write it to ``path`` atomically."""
    import cv2
    ok, encoded = cv2.imencode('.png', image)
    if not ok:
        raise OSError(f'cannot encode an image of shape {getattr(image, "shape", None)} as '
                      f'PNG for {path}')
    atomic_write_bytes(str(path), encoded.tobytes())


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` atomically (the object is serialised before any write)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
