"""The backdrop: the sky with clouds, and the skyline of buildings and
trees where the street ends."""
import numpy as np

from .context import SceneContext
from .style import pick_color
from .textures import frac, sample, smoothstep
from .train_ids import BUILDING, VEGETATION


def paint_sky(scene: SceneContext) -> None:
    """A vertical gradient with clouds, down to the horizon (the canvas is
    sky-labelled from the start)."""
    style, rng, camera = scene.style, scene.rng, scene.camera
    textures = scene.textures
    window, dx, dy = camera.window(bottom=camera.horizon + 1)
    top = pick_color(rng, style.colors['sky_top'], style, 0.05)
    horizon = pick_color(rng, style.colors['sky_horizon'], style, 0.03)
    t = np.clip(1 + dy / max(camera.horizon, 1.0), 0, 1)[..., None] ** 1.5
    sky = top * (1 - t) + horizon * t
    clouds = sample(textures.coarse, (dx + camera.vp_x) * 0.35 + 37,
                    (dy + camera.horizon) * 0.9 + 11)
    threshold = 1.6 - 2.8 * style.cloud_cover
    softness = 0.4 + 1.2 * style.cloud_cover
    cover = smoothstep(threshold, threshold + softness, clouds)[..., None]
    shade = 1 - 0.25 * style.cloud_cover * smoothstep(
        0, 2, sample(textures.fine, dx * 0.08, dy * 0.15) + clouds)
    cloud = pick_color(rng, style.colors['cloud'], style, 0.02) * shade[
        ..., None]
    scene.canvas.img[window] = sky * (1 - cover) + cloud * cover


def paint_skyline(scene: SceneContext) -> None:
    """Buildings and trees across the end of the street (at ``z_end``),
    hazed towards the sky, wherever nothing nearer was painted."""
    style, camera, canvas = scene.style, scene.camera, scene.canvas
    textures, z_end = scene.textures, scene.street.z_end
    sky = scene.street.skyline
    scale = camera.focal / z_end
    top = camera.horizon + scale * (camera.cam_h - sky['height'].max() - 2)
    window, dx, dy = camera.window(top=top - 1, bottom=camera.horizon
                                   + scale * camera.cam_h + 1)
    x = np.broadcast_to(dx / scale, (dy.shape[0], dx.shape[1]))
    y = np.broadcast_to(camera.cam_h - dy / scale, x.shape)
    idx = np.clip(np.searchsorted(sky['x'], x) - 1, 0,
                  len(sky['height']) - 1)
    trees = sky['trees'][idx]
    bumps = 1.5 * sample(textures.coarse, x * 8, np.full_like(x, 3))
    top = sky['height'][idx] + np.where(trees, bumps, 0)
    visible = (y >= 0) & (y <= top) & (canvas.depth[window] > z_end)
    x, y, idx, trees = x[visible], y[visible], idx[visible], trees[visible]
    leaves = sample(textures.leaf, x * 25, y * 25)
    windows = ~trees & (frac(y / 3.2) > 0.4) & (frac(x / 2.8) > 0.45)
    pattern = np.where(trees, 1 + 0.5 * style.leaf_grain * leaves,
                       1 - 0.25 * windows)
    color = sky['color'][idx] * pattern[:, None]
    label = np.where(trees, VEGETATION, BUILDING).astype(np.uint8)
    # distant haze pulls colours towards the sky behind
    haze = np.float32(0.25 + 0.25 * style.cloud_cover)
    color = color * (1 - haze) + canvas.img[window][visible] * haze
    canvas.put(window, visible, np.full(len(x), z_end, np.float32),
               label, color)
