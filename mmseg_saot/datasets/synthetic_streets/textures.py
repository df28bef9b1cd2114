"""Tileable noise textures, their lookup, and small shaping functions.

A scene uses three textures (:class:`SceneTextures`): fine grain, coarse
blotches and leaves, each a randomly shifted and flipped copy of a cached
noise tile, sampled at pixel or metre coordinates by :func:`sample`.
"""
import functools
from typing import NamedTuple

import cv2
import numpy as np

from .style import DomainStyle


class SceneTextures(NamedTuple):
    """The noise textures of one scene, each (size, size) float32."""
    fine: np.ndarray     # 256 px, grain of asphalt, paving and objects
    coarse: np.ndarray   # 256 px, clouds, stains, repaired patches
    leaf: np.ndarray     # 128 px, foliage and grass at the style's scale


def scene_textures(rng, style: DomainStyle) -> SceneTextures:
    """Draw the fine, coarse and leaf textures of a scene (in that order)."""
    fine = shuffled(rng, noise_texture(256, 0.7))
    coarse = shuffled(rng, noise_texture(256, 12.0))
    leaf = shuffled(rng, noise_texture(128, round(style.leaf_scale, 2)))
    return SceneTextures(fine, coarse, leaf)


@functools.lru_cache(maxsize=8)
def noise_texture(size: int, sigma: float) -> np.ndarray:
    """Tileable Gaussian noise (``size`` square), low-passed with ``sigma``
    pixels through the FFT, zero mean and unit deviation. Cached: scenes
    use randomly shifted and flipped copies (see :func:`shuffled`)."""
    rng = np.random.default_rng([size, int(sigma * 1000)])
    noise = rng.standard_normal((size, size))
    if sigma > 0:
        freq = np.fft.fftfreq(size)
        gain = np.exp(-2 * (np.pi * sigma) ** 2 *
                      (freq[:, None] ** 2 + freq[None, :] ** 2))
        noise = np.fft.ifft2(np.fft.fft2(noise) * gain).real
    noise = (noise - noise.mean()) / (noise.std() + 1e-8)
    noise = noise.astype(np.float32)
    noise.flags.writeable = False
    return noise


def shuffled(rng, texture: np.ndarray) -> np.ndarray:
    """A randomly shifted, flipped and transposed copy of a tileable
    texture."""
    texture = np.roll(texture, tuple(rng.integers(0, texture.shape[0], 2)),
                      axis=(0, 1))
    if rng.random() < 0.5:
        texture = texture.T
    return np.ascontiguousarray(texture[::rng.choice([-1, 1])])


def sample(texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear lookup of a tileable texture at pixel coordinates (u, v).

    ``u`` and ``v`` broadcast to any shape (1-D included) and must be finite.
    """
    size = texture.shape[0]
    u, v = np.broadcast_arrays(np.asarray(u, np.float32),
                               np.asarray(v, np.float32))
    shape = u.shape
    # cv2.remap takes 2-D maps below 32767 a side: fold into rows of 256
    n = u.size
    if n == 0:
        return np.zeros(shape, np.float32)
    pad = (-n) % 256
    maps = [np.pad(np.mod(c.ravel(), np.float32(size)), (0, pad)).reshape(
        -1, 256) for c in (u, v)]
    out = cv2.remap(texture, maps[0], maps[1], cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return out.ravel()[:n].reshape(shape)


def frac(x):
    """The fractional part, in [0, 1) also for negative ``x``."""
    return x - np.floor(x)


def smoothstep(edge0, edge1, x):
    """0 below ``edge0``, 1 above ``edge1``, a cubic ramp between."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3 - 2 * t)
