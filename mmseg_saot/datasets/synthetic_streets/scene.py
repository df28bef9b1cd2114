"""Render one street scene: the painters of this package, in order."""
from typing import Sequence, Tuple, Union

import numpy as np

from ..cityscapes_labels import TRAIN_ID_LUT
from .backdrop import paint_sky, paint_skyline
from .context import SceneContext
from .facades import paint_boundary, paint_facade
from .ground import paint_ground
from .placement import place_objects
from .postprocess import finish, paint_hood
from .style import DomainStyle
from .train_ids import EGO_LABEL_ID

#: Default resolution (width, height): 32 x 16 patches of 14 pixels.
WIDTH, HEIGHT = 448, 224

Seed = Union[int, Sequence[int]]


def render_scene(seed: Seed, style: DomainStyle, width: int = WIDTH,
                 height: int = HEIGHT) -> Tuple[np.ndarray, np.ndarray]:
    """Render one street scene.

    Args:
        seed: an int or a sequence of ints (e.g. ``(seed, domain, index)``);
            the same seed and style always give the same scene.
        style: the domain's appearance and layout.
        width, height: image size in pixels.

    Returns:
        ``(image, label_ids)``: RGB ``(H, W, 3)`` uint8 and Cityscapes label
        ids ``(H, W)`` uint8 (use
        :func:`~mmseg_saot.datasets.cityscapes_labels.label_ids_to_train_ids`
        for train ids).
    """
    scene = SceneContext.sample(np.random.default_rng(seed), style, width,
                                height)
    # every step draws from scene.rng: their order is part of the output
    paint_sky(scene)
    lanes = paint_ground(scene)
    for side in scene.street.sides.values():
        if side['built']:
            paint_facade(scene, side)
        elif side['boundary'][0] != 'none':
            paint_boundary(scene, side)
    paint_skyline(scene)
    scene.canvas.freeze_background()
    objects = place_objects(scene, lanes)
    for _, draw in sorted(objects, key=lambda item: -item[0]):  # far first
        draw()
    ego = paint_hood(scene)
    image = finish(scene)
    label_ids = TRAIN_ID_LUT[scene.canvas.label]
    label_ids[ego] = EGO_LABEL_ID
    return image, label_ids
