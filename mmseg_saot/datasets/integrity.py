"""Read every image and label map of a dataset and say what the pipeline would trip on.

``tools/check_data.py`` runs this over a config's datasets. Each sample is read as
MMSeg's loading transforms read it (with the decoding backends of the dataset's
pipeline, :func:`decode_backends`: by default the image with OpenCV, the label map with
Pillow, ``flag='unchanged'``) and checked for what otherwise surfaces as a traceback
mid-training or as silently wrong labels:

* an image or label map that cannot be decoded (truncated download, not an image);
* a label map of another size than its image;
* a label map with colour channels (an RGB rendering of the classes instead of one
  channel of class ids) or with values above 255 (``uint8`` would wrap them);
* label values that are neither a class id nor the ignore index, after the dataset's
  ``reduce_zero_label`` and ``label_map`` (labels not converted to train ids).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmseg_saot.utils.errors import error_reason

from .layout import pipeline_step

# MMSeg's defaults: LoadImageFromFile decodes with OpenCV, LoadAnnotations with Pillow
IMAGE_BACKEND, LABEL_BACKEND = 'cv2', 'pillow'


def decode_backends(dataset_cfg: dict) -> Dict[str, str]:
    """``{'image_backend', 'label_backend'}``: the ``imdecode_backend`` of the dataset's
    ``LoadImageFromFile`` and ``LoadAnnotations`` transforms (MMSeg's defaults where a
    transform does not set it or is absent)."""
    image = pipeline_step(dataset_cfg, 'LoadImageFromFile') or {}
    label = pipeline_step(dataset_cfg, 'LoadAnnotations') or {}
    return dict(image_backend=image.get('imdecode_backend', IMAGE_BACKEND),
                label_backend=label.get('imdecode_backend', LABEL_BACKEND))


def label_value_problem(values: Sequence[int], num_classes: int, ignore_index: int,
                        reduce_zero_label: bool = False,
                        label_map: Optional[Dict[int, int]] = None) -> Optional[str]:
    """What is wrong with a label map's distinct ``values``, or None.

    Args:
        values: the distinct values of the label map as stored.
        num_classes: classes of the dataset (valid ids ``0 .. num_classes - 1``).
        ignore_index: the value that marks unlabelled pixels.
        reduce_zero_label: the dataset's setting (0 becomes ignore, the rest ``v - 1``).
        label_map: the dataset's old-id -> new-id map (custom classes), if any.
    """
    stored = np.asarray(sorted(set(int(v) for v in values)), dtype=np.int64)
    if stored.size and stored.max() > 255:
        return (f'values up to {stored.max()} (a 16-bit label map); MMSeg reads labels as '
                '8-bit, so they would wrap around')
    loaded = stored.copy()
    if reduce_zero_label:
        loaded = np.where(stored == 0, 255, stored - 1)
        loaded[loaded == 254] = 255
    if label_map:
        loaded = np.asarray([label_map.get(int(v), int(v)) for v in loaded], dtype=np.int64)
    bad = sorted(int(s) for s, v in zip(stored, loaded)
                 if v != ignore_index and not 0 <= v < num_classes)
    if not bad:
        return None
    shown = ', '.join(map(str, bad[:8])) + (', ...' if len(bad) > 8 else '')
    return (f'label values {shown} are not class ids 0-{num_classes - 1} nor the ignore '
            f'index {ignore_index} (labels not converted to train ids?)')


def check_sample(img_path: str, seg_map_path: Optional[str], num_classes: int,
                 ignore_index: int = 255, reduce_zero_label: bool = False,
                 label_map: Optional[Dict[int, int]] = None,
                 image_backend: str = IMAGE_BACKEND,
                 label_backend: str = LABEL_BACKEND) -> List[str]:
    """The problems of one sample, each ``'<file>: <problem>'``; empty if it is fine.

    Args:
        img_path: the image.
        seg_map_path: its label map, or None (unlabelled target images).
        num_classes, ignore_index, reduce_zero_label, label_map: the dataset's, as in
            :func:`label_value_problem`.
        image_backend, label_backend: mmcv decoding backends (``imdecode_backend`` of
            the pipeline's loading transforms, :func:`decode_backends`).
    """
    import mmcv
    problems = []
    image_hw = None
    try:
        image = mmcv.imread(img_path, backend=image_backend)
        if image is None:
            raise ValueError('not a readable image')
        image_hw = image.shape[:2]
    except Exception as err:  # any decoder failure is the file's problem
        problems.append(f'{img_path}: cannot read the image ({error_reason(err)})')
    if seg_map_path is None:
        return problems
    try:
        array = read_label_map(seg_map_path, label_backend)
    except Exception as err:  # any decoder failure is the file's problem
        problems.append(f'{seg_map_path}: cannot read the label map ({error_reason(err)})')
        return problems
    if array.ndim == 3 and array.shape[2] > 1:
        problems.append(f'{seg_map_path}: the label map has {array.shape[2]} channels; MMSeg '
                        'needs one channel of class ids (a grayscale or palette PNG)')
        return problems
    if image_hw is not None and tuple(array.shape[:2]) != tuple(image_hw):
        problems.append(f'{seg_map_path}: the label map is {array.shape[1]}x{array.shape[0]} '
                        f'but its image is {image_hw[1]}x{image_hw[0]}')
    problem = label_value_problem(np.unique(array), num_classes, ignore_index,
                                  reduce_zero_label, label_map)
    if problem:
        problems.append(f'{seg_map_path}: {problem}')
    return problems


def check_pair(paths: Tuple[str, Optional[str]], **settings) -> List[str]:
    """:func:`check_sample` of an ``(img_path, seg_map_path)`` pair (a picklable function
    for a process pool); ``settings`` are its keyword arguments."""
    return check_sample(*paths, **settings)


def read_label_map(path: str, backend: str = LABEL_BACKEND) -> np.ndarray:
    """The label map at ``path`` as MMSeg's ``LoadAnnotations`` with ``imdecode_backend=
    backend`` decodes it, before its squeeze (Pillow, the default: palette indices, not
    colours); raises whatever the decoder raises."""
    if backend != 'pillow':
        import mmcv
        array = mmcv.imread(path, flag='unchanged', backend=backend)
        if array is None:
            raise ValueError('not a readable image')
        return array
    from PIL import Image
    with Image.open(path) as label:
        label.load()
        return np.asarray(label)


def wide_label_problem(path: str) -> Optional[str]:
    """What is wrong with a label map stored in more than 8 bits, or None.

    MMSeg's ``LoadAnnotations`` casts label maps to ``uint8``, so a value above 255
    wraps around to another class without a word. Only the file's header is read
    unless it is a 16- or 32-bit image (then its values are checked); a file Pillow
    cannot open is left to the loader.
    """
    from PIL import Image
    try:
        with Image.open(path) as label:
            if not label.mode.startswith('I'):
                return None
            label.load()
            largest = int(np.asarray(label).max(initial=0))
    except Exception:  # not ours to report: the loader already read it
        return None
    if largest <= 255:
        return None
    return label_value_problem([largest], 256, 255) + '.'


def unreadable_label_maps(paths: Sequence[str]) -> List[str]:
    """Those of ``paths`` that :func:`read_label_map` cannot decode."""
    broken = []
    for path in paths:
        try:
            read_label_map(path)
        except Exception:  # any decoder failure: the file is the problem
            broken.append(path)
    return broken
