"""The buffers a scene is painted into: colour, train ids and depth."""
import numpy as np

from .camera import FAR
from .train_ids import SKY


class Canvas:
    """``img`` (H, W, 3) float32 RGB in 0..1, ``label`` (H, W) uint8 train
    ids (sky where nothing is painted), ``depth`` (H, W) float32 metres.

    ``background_depth`` is a copy of ``depth`` taken once the background
    is painted: objects are hidden only behind background surfaces.
    """

    def __init__(self, width: int, height: int):
        self.img = np.zeros((height, width, 3), np.float32)
        self.label = np.full((height, width), SKY, np.uint8)
        self.depth = np.full((height, width), FAR, np.float32)
        self.background_depth = None

    def freeze_background(self) -> None:
        """Remember the depth of the background for the objects' depth test."""
        self.background_depth = self.depth.copy()

    def put(self, window, mask, depth, label, color):
        """Paint a background surface on the pixels ``mask`` of ``window``
        (``depth``, ``label``, ``color`` are given for those pixels only, in
        row-major order) where it is nearer than what is there."""
        rows, cols = np.nonzero(mask)
        old_depth = self.depth[window]
        nearer = depth < old_depth[rows, cols]
        rows, cols = rows[nearer], cols[nearer]
        old_depth[rows, cols] = depth[nearer]
        self.label[window][rows, cols] = (label if np.isscalar(label)
                                          else label[nearer])
        self.img[window][rows, cols] = color[nearer]
