"""Read the label PNGs that the dataset converters (``tools/dataset_converters``) are
given and write: class or label ids as pixel values, one channel.

Datasets ship their labels as paletted ('P') PNGs, whose pixel values are the ids and
whose palette only colours them (GTA5, PASCAL VOC), or as single-channel PNGs
(Cityscapes' ``*_labelIds.png``). A colour rendering of the classes (RGB) holds no ids,
and a 16-bit PNG with values above 255 no 8-bit ones: both are refused, naming the file.
"""
import numpy as np

from mmseg_saot.utils.errors import UserInputError

# Pillow modes whose pixel values are ids: palette indices, 8-bit, 32-bit and 16-bit grey
INDEX_MODES = ('P', 'L', 'I', 'I;16')
# modes of ids saved with the wrong option (not colour renderings): what to say
_OTHER_SAVES = {'LA': 'has an alpha channel', 'PA': 'has an alpha channel',
                '1': 'is 1-bit (black and white)'}


class LabelFileError(UserInputError):
    """A label file that cannot be read or holds no single-channel id image."""


def read_index_png(path: str, *, content: str) -> np.ndarray:
    """Read a label PNG as a 2-D uint8 array of its pixel values (palette indices of a
    'P' image, never its colours).

    Args:
        path: the PNG.
        content: what its values are, for the messages (``'Cityscapes label ids'``).

    Raises:
        LabelFileError: the file cannot be decoded, is not a single-channel or paletted
            image, or holds values outside 0..255; the message names it.
    """
    try:
        from PIL import Image
    except ImportError:   # Pillow comes with matplotlib, a mmengine dependency
        raise LabelFileError('reading label PNGs needs Pillow: pip install pillow') from None
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image)
    except Exception as error:   # truncated, not a PNG, unreadable, ...
        raise LabelFileError(f'cannot read label file {path}: {error}') from None
    if mode in _OTHER_SAVES:
        raise LabelFileError(f'label file {path} {_OTHER_SAVES[mode]}; save it as 8-bit '
                             f'single-channel (L) or paletted (P) PNG of {content}')
    if mode not in INDEX_MODES or array.ndim != 2:
        raise LabelFileError(
            f'label file {path} is a {mode} image; expected a paletted (P) or '
            f'single-channel (L) PNG of {content}, not a colour rendering of the classes')
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise LabelFileError(
                f'label file {path} is a 16-bit ({mode}) image with values '
                f'{array.min()}..{array.max()}; expected {content} in 0..255 (an 8-bit '
                'paletted or single-channel PNG)')
        array = array.astype(np.uint8)
    return array


def read_train_ids(path: str) -> np.ndarray:
    """Read a train-id PNG that a converter wrote (2-D uint8).

    Raises:
        LabelFileError: it cannot be decoded, has several channels or holds 16-bit values
            above 255 (which a cast to uint8 would wrap: 300 -> 44); the message says to
            delete it or convert again with ``--force``.
    """
    import cv2
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 2:
        raise LabelFileError(f'cannot read converted label file {path}; delete it or run '
                             'again with --force')
    if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
        raise LabelFileError(f'converted label file {path} holds values {array.min()}..'
                             f'{array.max()}, not 8-bit train ids; delete it or run again '
                             'with --force')
    return array.astype(np.uint8)
