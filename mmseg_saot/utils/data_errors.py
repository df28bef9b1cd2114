"""Explain an error raised while a data sample was read (a corrupt or missing image or
label map) in one line that points to ``tools/check_data.py``.

MMCV's and MMSeg's loading transforms raise whatever the decoder raises: an
``AssertionError`` naming the image for an undecodable image, and Pillow's
``UnidentifiedImageError`` (which names no file) for a label map.
"""
import shlex
import traceback
from typing import Optional, Sequence

# the loading transforms of mmcv and mmseg (image, label map)
LOADING_MODULES = ('mmcv/transforms/loading.py', 'mmseg/datasets/transforms/loading.py')


def explain_data_read_failure(err: BaseException, cfg=None,
                              cfg_options: Sequence[str] = ()) -> Optional[str]:
    """One line for an error raised while a loading transform read a sample (a corrupt
    or missing image or label map), else None.

    Args:
        err: the error that reached the tool.
        cfg: the run's ``mmengine.Config`` (its file is named in the message), or None.
        cfg_options: the tool's ``--cfg-options`` items, repeated in the suggested
            ``check_data.py`` command (they may point the datasets elsewhere).

    In a DataLoader worker the error reaches the main process as text (torch re-raises
    it with the worker's traceback in the message), so both the frames and the message
    are searched for the loading transforms.
    """
    text = str(err)
    frames = [frame.filename.replace('\\', '/') for frame in
              traceback.extract_tb(err.__traceback__)]
    if not any(module in place for module in LOADING_MODULES for place in frames + [text]):
        return None
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    cause = lines[-1] if 'Original Traceback' in text and lines else \
        f'{type(err).__name__}: {lines[0] if lines else ""}'.rstrip(': ')
    config = (cfg.filename if cfg is not None and cfg.filename else None) or 'CONFIG'
    command = shlex.join(['python', 'tools/check_data.py', config] + (
        ['--cfg-options', *cfg_options] if cfg_options else []))
    return (f'reading a data sample failed ({cause}). `{command}` lists every unreadable '
            'or unusable image and label map of the config, with its file.')
