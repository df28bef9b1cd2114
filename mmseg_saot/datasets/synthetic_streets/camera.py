"""The pinhole camera of a scene: projection and per-pixel rays.

World frame in metres: X to the right, Y up from the ground, Z forward
along the street. Image: ``x = vp_x + f X / Z``,
``y = horizon + f (cam_h - Y) / Z``.
"""
from dataclasses import dataclass

import numpy as np

#: Depth of pixels that see no surface (the sky).
FAR = np.float32(1e9)


@dataclass(frozen=True)
class Camera:
    """Image size, horizon row, vanishing-point column, focal length (all
    pixels) and camera height above the ground (metres)."""
    width: int
    height: int
    horizon: float
    vp_x: float
    focal: float
    cam_h: float

    @classmethod
    def sample(cls, rng, width: int, height: int) -> 'Camera':
        """A random camera for an image of ``width`` x ``height`` pixels."""
        horizon = rng.uniform(0.36, 0.5) * height
        vp_x = rng.uniform(0.36, 0.64) * width
        focal = rng.uniform(0.48, 0.62) * width
        cam_h = rng.uniform(1.3, 1.9)
        return cls(width, height, horizon, vp_x, focal, cam_h)

    @property
    def z_near(self) -> float:
        """Depth (metres) of the nearest ground point, on the bottom row."""
        return self.focal * self.cam_h / (self.height - self.horizon)

    def project(self, x, y, z):
        """World (X, Y, Z) metres -> image (x, y) pixels, arrays broadcast."""
        z = np.maximum(z, 1e-3)
        return (self.vp_x + self.focal * np.asarray(x) / z,
                self.horizon + self.focal * (self.cam_h - np.asarray(y)) / z)

    def scale(self, z: float) -> float:
        """Pixels per metre at depth z."""
        return self.focal / max(z, 1e-3)

    def quad(self, xs, ys, zs) -> np.ndarray:
        """Project world points given as X, Y, Z sequences -> (N, 2) pixels."""
        z = np.maximum(np.asarray(zs, np.float32), 1e-3)
        points = np.empty((len(z), 2), np.float32)
        points[:, 0] = self.vp_x + self.focal * np.asarray(xs, np.float32) / z
        points[:, 1] = self.horizon + self.focal * (
            self.cam_h - np.asarray(ys, np.float32)) / z
        return points

    def box_face(self, x0, x1, y0, y1, z):
        """A rectangle facing the camera at depth z: X x0..x1, Y y0..y1."""
        return self.quad([x0, x1, x1, x0], [y0, y0, y1, y1], [z] * 4)

    def side_face(self, x, y0, y1, z0, z1):
        """A rectangle in the plane X = x, heights y0..y1, depths z0..z1."""
        return self.quad([x] * 4, [y0, y1, y1, y0], [z0, z0, z1, z1])

    def window(self, top: float = 0, bottom: float = None, left: float = 0,
               right: float = None):
        """A block of rows/columns (clipped to the image) and its ray offsets
        from the vanishing point: ``(window, dx (1, w), dy (h, 1))``."""
        bottom = self.height if bottom is None else bottom
        right = self.width if right is None else right
        r0, r1 = int(np.clip(np.floor(top), 0, self.height)), int(
            np.clip(np.ceil(bottom), 0, self.height))
        c0, c1 = int(np.clip(np.floor(left), 0, self.width)), int(
            np.clip(np.ceil(right), 0, self.width))
        dx = (np.arange(c0, c1, dtype=np.float32) + 0.5 - self.vp_x)[None, :]
        dy = (np.arange(r0, r1, dtype=np.float32) + 0.5
              - self.horizon)[:, None]
        return (slice(r0, r1), slice(c0, c1)), dx, dy

    def plane_window(self, plane_x: float, height: float):
        """Rows and columns where the plane X = plane_x (up to ``height``
        metres) can appear, plus ray offsets, depth z and height y."""
        s = 1 if plane_x > 0 else -1
        edge = 0 if s < 0 else self.width
        z_edge = max(self.focal * plane_x / (edge + 0.5 * s - self.vp_x), 0.1)
        top = self.horizon + self.focal * (self.cam_h - height) / z_edge
        window, dx, dy = self.window(
            top=min(top, self.horizon) - 1,
            left=0 if s < 0 else self.vp_x, right=self.vp_x if s < 0 else None)
        valid = dx * s > 0.5
        z = np.where(valid, self.focal * plane_x / np.where(valid, dx, 1.0),
                     FAR)
        y = self.cam_h - dy * np.minimum(z, 1e4) / self.focal
        z = np.broadcast_to(z, y.shape)
        return window, z.astype(np.float32), y.astype(np.float32)
