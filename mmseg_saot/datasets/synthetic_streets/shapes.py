"""Objects as image-space parts, rasterised far to near with a depth test.

An object factory (``vehicles.py``, ``people.py``, ``roadside.py``) builds
its parts in metres, projects them, and returns ``(depth, draw)`` from
:func:`shape_drawer`; ``scene.py`` calls the draws from far to near.
Each part is ``(train_id, rgb, kind, geometry...)`` with kind

* ``'poly'``: points (N, 2);
* ``'line'``: points (2, 2), then the thickness in pixels;
* ``'ring'``: (centre, radius px, thickness px).

Later parts of an object paint over earlier ones; an object paints only
where it is nearer than the background (not than other objects: they are
painted in depth order).
"""
from typing import Callable, List, Tuple

import cv2
import numpy as np

from .context import SceneContext
from .textures import sample
from .train_ids import NONE

Part = Tuple
Drawer = Tuple[float, Callable[[], None]]


def shape_drawer(scene: SceneContext, z: float, parts: List[Part],
                 grain: float = 0.08, leafy: bool = False) -> Drawer:
    """(depth, draw) for an object made of image-space parts at depth
    ``z``, textured with ``grain`` or, if ``leafy``, with foliage."""
    def draw():
        draw_parts(scene, z, parts, grain, leafy)
    return z, draw


def draw_parts(scene: SceneContext, z: float, parts: List[Part],
               grain: float, leafy: bool) -> None:
    """Paint an object's parts on the canvas (see the module docstring)."""
    camera, canvas, style = scene.camera, scene.canvas, scene.style
    points = np.concatenate([
        np.asarray(p[3][0] if p[2] == 'ring' else p[3],
                   np.float32).reshape(-1, 2) for p in parts])
    pad = max(3, max((p[3][1] + p[3][2] if p[2] == 'ring' else
                      p[4] if p[2] == 'line' else 0) for p in parts))
    x0 = int(max(0, np.floor(points[:, 0].min() - pad)))
    y0 = int(max(0, np.floor(points[:, 1].min() - pad)))
    x1 = int(min(camera.width, np.ceil(points[:, 0].max() + pad)))
    y1 = int(min(camera.height, np.ceil(points[:, 1].max() + pad)))
    if x1 <= x0 or y1 <= y0:
        return
    index = part_index(parts, x0, y0, x1, y1)
    mask = (index > 0) & (canvas.background_depth[y0:y1, x0:x1] > z)
    if not mask.any():
        return
    part_labels = np.array([NONE] + [p[0] for p in parts], np.uint8)
    part_colors = np.stack([np.zeros(3, np.float32)] +
                           [np.asarray(p[1], np.float32) for p in parts])
    index = index[mask]
    color = part_colors[index]
    # texture: grain (foliage: blotchy leaves, posterised in cartoon style)
    if leafy:
        ys, xs = np.nonzero(mask)
        leaves = sample(scene.textures.leaf, (xs + x0) * 2.0,
                        (ys + y0) * 2.0)
        shade = 1 + style.leaf_grain * leaves
        if style.cel_shading > 0:
            levels = np.round(shade * 3) / 3
            shade = shade + style.cel_shading * (levels - shade)
        color *= shade[:, None]
    else:
        ys, xs = np.nonzero(mask)
        color *= (1 + grain * scene.textures.fine[
            (ys + y0 * 7) % 256, (xs + x0 * 3) % 256])[:, None]
    roi = (slice(y0, y1), slice(x0, x1))
    canvas.img[roi][mask] = color
    canvas.label[roi][mask] = part_labels[index]
    canvas.depth[roi][mask] = z


def part_index(parts: List[Part], x0: int, y0: int, x1: int,
               y1: int) -> np.ndarray:
    """The part numbers 1..n drawn over the box [x0, x1) x [y0, y1) (0:
    no part), with 4 bits of sub-pixel precision."""
    index = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([x0, y0], np.float32)
    for k, part in enumerate(parts, start=1):
        kind = part[2]
        if kind == 'poly':
            pts = np.round((np.asarray(part[3], np.float32) - offset)
                           * 16).astype(np.int32)
            cv2.fillPoly(index, [pts], k, cv2.LINE_8, 4)
        elif kind == 'line':
            pts = np.round((np.asarray(part[3], np.float32) - offset)
                           * 16).astype(np.int32)
            cv2.line(index, tuple(pts[0]), tuple(pts[1]), k,
                     max(1, int(round(part[4]))), cv2.LINE_8, 4)
        else:  # ring
            centre, radius, thick = part[3]
            c = tuple(int(v) for v in np.round(
                (np.asarray(centre) - offset) * 16))
            cv2.circle(index, c, max(1, int(round(radius * 16))), k,
                       max(1, int(round(thick))), cv2.LINE_8, 4)
    return index
