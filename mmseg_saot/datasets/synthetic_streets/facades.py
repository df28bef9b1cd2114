"""The street's walls, ray-cast on the vertical plane X = side['outer']:
building facades (windows, shops, brick or plaster) on built-up sides,
and fences, walls or hedges on open ones."""
from typing import Dict

import numpy as np

from .context import SceneContext
from .textures import frac, sample, smoothstep
from .train_ids import BUILDING, FENCE, VEGETATION, WALL


def facade_lighting(scene: SceneContext, s: int) -> float:
    """Brightness of a facade facing the street from side ``s``."""
    return 1 + 0.5 * scene.style.sun * (
        1 if s == scene.street.sun_side else -1)


def paint_facade(scene: SceneContext, side: Dict) -> None:
    """The building blocks of a built-up side."""
    style, canvas = scene.style, scene.canvas
    blocks = side['blocks']
    s = side['sign']
    window, z, y = scene.camera.plane_window(side['outer'],
                                             float(blocks['height'].max()))
    idx = np.clip(np.searchsorted(blocks['z1'], z), 0,
                  len(blocks['z1']) - 1)
    u = z - blocks['z0'][idx]                 # metres along the facade
    visible = ((u >= 0) & (z <= blocks['z1'][idx]) & (y >= 0)
               & (y <= blocks['height'][idx]) & (z < canvas.depth[window]))
    # from here on: 1-D arrays over the visible pixels only
    z, y, u, idx = z[visible], y[visible], u[visible], idx[visible]
    height = blocks['height'][idx]
    floor_h, column = blocks['floor'][idx], blocks['column'][idx]
    fv, fu = frac(y / floor_h), frac(u / column)
    has_shop = blocks['shop'][idx]
    upper = y >= floor_h * 1.3
    win_w, win_h = blocks['win_w'][idx] / 2, blocks['win_h'][idx] / 2
    du, dv = np.abs(fu - 0.5), np.abs(fv - 0.45)
    # windows on every floor, the ground floor too unless it has shops
    in_frame = (upper | ~has_shop) & (y > 0.8) & (y < height - 1.0)
    pane = in_frame & (du < win_w) & (dv < win_h)
    frame = in_frame & (du < win_w + 0.05) & (dv < win_h + 0.05) & ~pane
    shop = (~upper & has_shop & (y > 0.4) & (y < 3.0)
            & (np.abs(frac(u / (2 * column)) - 0.5) < 0.38))
    # wall material: brick courses or plaster stains, floor ledges
    mortar = ((frac(y / 0.3) < 0.14) |
              (frac(u / 0.6 + 0.5 * (np.floor(y / 0.3) % 2)) < 0.07))
    stains = sample(scene.textures.coarse, u * 4, y * 4 + 70)
    shade = (1 + style.facade_grain * np.tanh(stains)
             - style.brick_contrast * (blocks['brick'][idx] & mortar)
             + style.ledges * ((fv < 0.07) & upper))
    shade = np.where(height - y < 0.5, shade * 0.7, shade)  # cornice
    color = blocks['color'][idx] * shade[:, None]
    # glass: sky reflection brighter at the top of each pane
    glass = pane | shop
    color[glass] = blocks['glass'][idx[glass]] * (
        0.75 + 0.5 * fv[glass])[:, None]
    if style.window_frames > 0:
        color[frame] = style.window_frames
    else:
        color[frame] *= 0.8
    color *= (facade_lighting(scene, s)
              * (0.85 + 0.15 * smoothstep(0, 4, y)))[:, None]
    canvas.put(window, visible, z, BUILDING, color)


def paint_boundary(scene: SceneContext, side: Dict) -> None:
    """The fence, wall or hedge of an open side."""
    style, canvas, textures = scene.style, scene.canvas, scene.textures
    kind, height = side['boundary']
    s = side['sign']
    window, z, y = scene.camera.plane_window(side['outer'], height)
    visible = (y >= 0) & (y <= height) & (z < canvas.depth[window])
    z, y = z[visible], y[visible]
    if kind == 'fence':
        label = FENCE
        if style.game_look >= 0.5:   # wooden pickets
            pattern = 1 - 0.35 * (frac(z / 0.25) < 0.3)
        else:                          # metal mesh
            pattern = 1 - 0.3 * ((frac((z + y) / 0.2) < 0.2) |
                                 (frac((z - y) / 0.2) < 0.2))
        rail = (np.abs(y - height * 0.8) < 0.06) | (y > height - 0.08)
        pattern = np.where(rail, 1.15, pattern)
    elif kind == 'wall':
        label = WALL
        joints = ((frac(y / 0.5) < 0.06) |
                  (frac(z + 0.5 * (np.floor(y / 0.5) % 2)) < 0.03))
        stains = sample(textures.coarse, z * 3, y * 3)
        pattern = (1 - style.brick_contrast * joints
                   + 0.08 * np.tanh(stains))
        pattern = np.where(y > height - 0.12, 1.2, pattern)
    else:  # hedge
        label = VEGETATION
        leaves = sample(textures.leaf, z * 12, y * 12)
        pattern = 1 + style.leaf_grain * 0.8 * leaves
    color = side['boundary_color'] * (
        pattern * facade_lighting(scene, s))[:, None]
    canvas.put(window, visible, z, label, color)
