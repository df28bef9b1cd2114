"""The ground, ray-cast per pixel: asphalt with lane markings, grass
verges, paved sidewalks with kerb stones."""
from typing import Dict, Tuple

import numpy as np

from .context import SceneContext
from .layout import LaneMarkings, sample_lane_markings
from .style import pick_color
from .textures import frac, sample
from .train_ids import ROAD, SIDEWALK, TERRAIN


def paint_ground(scene: SceneContext) -> LaneMarkings:
    """Road, verges, sidewalks up to the end of the street. Painted
    first, over the sky only, so no depth test is needed.

    Returns the lanes (sampled here, after the asphalt colour), where the
    traffic is placed.
    """
    style, rng, camera = scene.style, scene.rng, scene.camera
    street, textures, canvas = scene.street, scene.textures, scene.canvas
    window, dx, dy = camera.window(
        top=camera.horizon + camera.focal * camera.cam_h / street.z_end)
    dy = np.maximum(dy, 0.5)
    z = camera.focal * camera.cam_h / dy                  # (h, 1)
    x = dx * z / camera.focal                             # (h, w)
    z = np.broadcast_to(z, x.shape)
    fade = np.exp(-z / 60.0)[..., None]
    # asphalt with grain, repaired patches, lane markings and a crossing
    asphalt = pick_color(rng, style.colors['road'], style)
    grain = sample(textures.fine, x * 40, z * 40)[..., None]
    patches = sample(textures.coarse, x * 3, z * 3)[..., None]
    color = asphalt * (1 + style.asphalt_grain * grain * fade
                       + style.asphalt_patches * np.tanh(patches))
    markings = sample_lane_markings(rng, style, street.road, camera.z_near)
    yellow, marked = lane_marking_masks(markings, street.road, x, z)
    color[marked] = (0.92, 0.92, 0.9)
    color[yellow] = (0.9, 0.75, 0.15)
    label = np.full(x.shape, TERRAIN, np.uint8)
    label[(x >= street.road[0]) & (x <= street.road[1])] = ROAD
    for s, side in street.sides.items():
        out = (x - side['edge']) * s  # metres outward from the kerb
        walk_end = side['verge'] + side['sidewalk']
        beyond = out > walk_end
        grass = (out > 0) & (out <= side['verge'])
        paved = (out > side['verge']) & (out <= walk_end)
        if side['built']:   # the ground of alleys between buildings
            paved |= beyond
        else:
            grass |= beyond
        color[grass] = grass_colors(scene, side['grass'], x[grass], z[grass])
        label[grass] = TERRAIN
        color[paved] = paving_colors(scene, side, x[paved], z[paved],
                                     out[paved])
        label[paved] = SIDEWALK
    canvas.img[window] = color
    canvas.label[window] = label
    canvas.depth[window] = z
    return markings


def lane_marking_masks(markings: LaneMarkings, road: Tuple[float, float],
                       x: np.ndarray, z: np.ndarray
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Masks (yellow, white) of lane lines and a zebra crossing at ground
    points (x, z)."""
    left, right = road
    half = 0.07
    yellow = np.zeros(x.shape, bool)
    white = np.zeros(x.shape, bool)
    dash = frac((z + markings.phase) / 9.0) < 0.4
    for k in range(1, markings.count):
        xb = left + markings.lane_w * k
        if k == markings.count // 2 and markings.yellow_centre:
            yellow |= np.abs(np.abs(x - xb) - 0.12) < half  # double solid
        else:
            white |= (np.abs(x - xb) < half) & dash
    if markings.edge_lines:
        white |= (np.abs(x - (left + 0.3)) < half) | (
            np.abs(x - (right - 0.3)) < half)
    if markings.zebra_z is not None:
        zc = markings.zebra_z
        zebra = ((z > zc) & (z < zc + 3.5) & (x > left + 0.5)
                 & (x < right - 0.5) & (frac(x) < 0.5))
        white |= zebra
        yellow &= ~zebra
    return yellow, white


def grass_colors(scene: SceneContext, base: np.ndarray, x: np.ndarray,
                 z: np.ndarray) -> np.ndarray:
    """Grass colours at ground points (x, z) given as 1-D arrays."""
    style, textures = scene.style, scene.textures
    blades = sample(textures.leaf, x * 60, z * 20)
    clumps = sample(textures.coarse, x * 6 + 50, z * 6)
    shade = (1 + style.leaf_grain * 0.6 * blades * np.exp(-z / 60.0)
             + 0.12 * np.tanh(clumps))
    return base * shade[:, None]


def paving_colors(scene: SceneContext, side: Dict, x: np.ndarray,
                  z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Sidewalk colours (tiles, kerb stones) at 1-D ground points; ``out``
    is the distance from the kerb in metres."""
    style = scene.style
    tile = style.tile_size
    joints = np.minimum(frac(x / tile),
                        frac(z / tile + 0.5 * (np.floor(x / tile) % 2)))
    groove = joints < 0.05 / tile
    grain = sample(scene.textures.fine, x * 30 + 99, z * 30)
    fade = np.exp(-z / 60.0)
    shade = 1 + fade * (0.04 * grain - style.tile_contrast * groove)
    color = side['ground'] * shade[:, None]
    kerb = out < side['verge'] + 0.25
    color[kerb] = pick_color(scene.rng, style.colors['curb'], style, 0.05)
    return color
