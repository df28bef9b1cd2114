"""What the camera adds after the scene is painted: the ego vehicle's
bonnet, then colour grading, bloom, vignetting, lens blur and sensor
noise."""
import functools

import cv2
import numpy as np

from .context import SceneContext
from .train_ids import EGO


def paint_hood(scene: SceneContext) -> np.ndarray:
    """The ego vehicle's bonnet across the bottom (Cityscapes' camera), with
    probability ``style.ego_hood``. Returns its mask (H, W) bool."""
    rng, canvas = scene.rng, scene.canvas
    h, w = scene.camera.height, scene.camera.width
    ego = np.zeros((h, w), bool)
    if rng.random() >= scene.style.ego_hood:
        return ego
    top = h * (1 - rng.uniform(0.07, 0.13))
    bend = h * rng.uniform(0.03, 0.07)
    xs = np.linspace(-0.02, 1.02, 24) * w
    ys = top + bend * ((xs - w / 2) / (w / 2)) ** 2
    pts = np.concatenate([np.stack([xs, ys], 1),
                          [[w + 2, h + 2], [-2, h + 2]]])
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1,
                 cv2.LINE_8, 4)
    ego = mask > 0
    rows = np.arange(h, dtype=np.float32)[:, None]
    # dark paint with a band reflecting the sky near the edge
    paint = 0.08 + 0.25 * np.exp(-((rows - top - 3) / 3.0) ** 2)
    canvas.img[ego] = (np.broadcast_to(paint, (h, w))[ego, None]
                       * np.array([0.9, 0.95, 1.0], np.float32))
    canvas.label[ego] = EGO
    return ego


def finish(scene: SceneContext) -> np.ndarray:
    """Colour grading, bloom, vignetting, blur and noise -> uint8 RGB."""
    style, camera = scene.style, scene.camera
    # tint, saturation and contrast are one affine colour map
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    saturate = (style.saturation * np.eye(3, dtype=np.float32)
                + (1 - style.saturation) * np.tile(luma, (3, 1)))
    matrix = style.contrast * saturate @ np.diag(
        np.asarray(style.tint, np.float32))
    affine = np.concatenate([matrix, np.full((3, 1), 0.5 * (
        1 - style.contrast), np.float32)], axis=1)
    img = cv2.transform(scene.canvas.img, affine)
    img = cv2.pow(np.clip(img, 0, 1), style.gamma)
    if style.bloom > 0:
        glow = cv2.GaussianBlur(np.maximum(img - 0.75, 0), (0, 0), 5)
        img += style.bloom * glow
    if style.vignette > 0:
        img *= (1 - style.vignette * radius2(camera.height,
                                             camera.width))[..., None]
    if style.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), style.blur_sigma)
    if style.noise_sigma > 0:   # luminance plus weaker colour noise
        noise = scene.rng.standard_normal(img.shape, dtype=np.float32)
        noise = 0.4 * noise + noise.mean(axis=2, keepdims=True)
        img += style.noise_sigma * noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


@functools.lru_cache(maxsize=4)
def radius2(height: int, width: int) -> np.ndarray:
    """Squared distance from the image centre, 1 at the corners."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    return (((xs - width / 2) / (width / 2)) ** 2 +
            ((ys - height / 2) / (height / 2)) ** 2) / 2
