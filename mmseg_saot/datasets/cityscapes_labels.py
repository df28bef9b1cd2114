"""The Cityscapes label space shared by GTA5, Cityscapes and the demo data.

GTA5 and Cityscapes annotate with the 34 Cityscapes *label ids* (0..33, plus
-1 for the licence plate); training and evaluation use the 19 *train ids*
(0..18) and 255 for every ignored label. The table below restates
``cityscapesscripts/helpers/labels.py`` (tests check it equals theirs), so
this module needs only numpy and imports nothing from mmseg or mmengine.
"""
from typing import Dict, Tuple

import numpy as np

IGNORE_INDEX = 255

#: The 19 train classes, in train-id order.
CLASSES: Tuple[str, ...] = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car',
    'truck', 'bus', 'train', 'motorcycle', 'bicycle')

#: RGB colour of each train class, in train-id order (Cityscapes' colours).
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
    (0, 0, 230), (119, 11, 32))

NUM_CLASSES = len(CLASSES)

#: ``(name, label id, train id, RGB colour)`` of every Cityscapes label, as in
#: cityscapesscripts' ``labels.py``; train id 255 (-1 for the licence plate)
#: means "ignored".
LABELS: Tuple[Tuple[str, int, int, Tuple[int, int, int]], ...] = (
    ('unlabeled', 0, 255, (0, 0, 0)),
    ('ego vehicle', 1, 255, (0, 0, 0)),
    ('rectification border', 2, 255, (0, 0, 0)),
    ('out of roi', 3, 255, (0, 0, 0)),
    ('static', 4, 255, (0, 0, 0)),
    ('dynamic', 5, 255, (111, 74, 0)),
    ('ground', 6, 255, (81, 0, 81)),
    ('road', 7, 0, (128, 64, 128)),
    ('sidewalk', 8, 1, (244, 35, 232)),
    ('parking', 9, 255, (250, 170, 160)),
    ('rail track', 10, 255, (230, 150, 140)),
    ('building', 11, 2, (70, 70, 70)),
    ('wall', 12, 3, (102, 102, 156)),
    ('fence', 13, 4, (190, 153, 153)),
    ('guard rail', 14, 255, (180, 165, 180)),
    ('bridge', 15, 255, (150, 100, 100)),
    ('tunnel', 16, 255, (150, 120, 90)),
    ('pole', 17, 5, (153, 153, 153)),
    ('polegroup', 18, 255, (153, 153, 153)),
    ('traffic light', 19, 6, (250, 170, 30)),
    ('traffic sign', 20, 7, (220, 220, 0)),
    ('vegetation', 21, 8, (107, 142, 35)),
    ('terrain', 22, 9, (152, 251, 152)),
    ('sky', 23, 10, (70, 130, 180)),
    ('person', 24, 11, (220, 20, 60)),
    ('rider', 25, 12, (255, 0, 0)),
    ('car', 26, 13, (0, 0, 142)),
    ('truck', 27, 14, (0, 0, 70)),
    ('bus', 28, 15, (0, 60, 100)),
    ('caravan', 29, 255, (0, 0, 90)),
    ('trailer', 30, 255, (0, 0, 110)),
    ('train', 31, 16, (0, 80, 100)),
    ('motorcycle', 32, 17, (0, 0, 230)),
    ('bicycle', 33, 18, (119, 11, 32)),
    ('license plate', -1, -1, (0, 0, 142)),
)

#: label id -> train id for the ids that label images can hold (0..33).
LABEL_ID_TO_TRAIN_ID: Dict[int, int] = {
    label_id: (IGNORE_INDEX if train_id < 0 else train_id)
    for _, label_id, train_id, _ in LABELS if label_id >= 0
}

#: train id -> label id of the first label with that train id (the inverse
#: that cityscapesscripts uses, e.g. 0 -> 7 'road'); for writing label-id
#: images from train-id maps.
TRAIN_ID_TO_LABEL_ID: Dict[int, int] = {
    train_id: label_id
    for _, label_id, train_id, _ in reversed(LABELS)
    if 0 <= train_id < IGNORE_INDEX
}


def _lookup_table(mapping: Dict[int, int], default: int) -> np.ndarray:
    table = np.full(256, default, dtype=np.uint8)
    for key, value in mapping.items():
        table[key] = value
    return table


#: 256-entry lookup tables: ``LABEL_ID_LUT[label_map]`` gives train ids (every
#: value that is not a Cityscapes label id becomes 255); ``TRAIN_ID_LUT``
#: maps train ids back to label ids (255 and unknown values -> 0 'unlabeled').
LABEL_ID_LUT = _lookup_table(LABEL_ID_TO_TRAIN_ID, IGNORE_INDEX)
TRAIN_ID_LUT = _lookup_table(TRAIN_ID_TO_LABEL_ID, 0)


def _check_label_map(label_map: np.ndarray) -> np.ndarray:
    label_map = np.asarray(label_map)
    if label_map.dtype == np.uint8:
        return label_map
    if not np.issubdtype(label_map.dtype, np.integer):
        raise TypeError('a label map must hold integers, got '
                        f'{label_map.dtype}')
    if label_map.size and (label_map.min() < 0 or label_map.max() > 255):
        raise ValueError('label map values must lie in 0..255, got '
                         f'{label_map.min()}..{label_map.max()}')
    return label_map.astype(np.uint8)


def label_ids_to_train_ids(label_map: np.ndarray) -> np.ndarray:
    """Map a Cityscapes label-id map to train ids (uint8, 255 = ignore).

    Args:
        label_map: integer array of any shape with values in 0..255.

    Returns:
        uint8 array of the same shape: 0..18 for the train classes, 255 for
        void labels and for values that are not Cityscapes label ids.
    """
    return LABEL_ID_LUT[_check_label_map(label_map)]


def train_ids_to_label_ids(train_map: np.ndarray) -> np.ndarray:
    """Map a train-id map back to Cityscapes label ids (255 -> 0 'unlabeled').

    The inverse of :func:`label_ids_to_train_ids` on the 19 train classes.
    """
    return TRAIN_ID_LUT[_check_label_map(train_map)]


def colorize_train_ids(train_map: np.ndarray) -> np.ndarray:
    """RGB picture (H, W, 3 uint8) of a train-id map; 255 is black."""
    colors = np.zeros((256, 3), dtype=np.uint8)
    colors[:NUM_CLASSES] = PALETTE
    return colors[_check_label_map(train_map)]
