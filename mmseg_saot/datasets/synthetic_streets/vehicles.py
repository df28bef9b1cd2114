"""Vehicles on the road: cars, buses and trucks, with their shadows.

Each factory draws its random parameters at once and returns
``(depth, draw)`` (see ``shapes.py``); the shadow is painted on the ground
at once, before any object is drawn.
"""
import cv2
import numpy as np

from .context import SceneContext
from .shapes import Drawer, shape_drawer
from .style import pick_color
from .train_ids import BUS, CAR, ROAD, SIDEWALK, TERRAIN, TRUCK


def vehicle(scene: SceneContext, x, z, oncoming, parked=False) -> Drawer:
    """A car, bus or truck on the road at (x, z); ``oncoming`` traffic
    shows its front, the rest its back; parked vehicles are cars."""
    rng, style = scene.rng, scene.style
    kind = 'car'
    if not parked and rng.random() < style.p_large_vehicle:
        kind = 'bus' if rng.random() < 0.5 else 'truck'
    if kind == 'car':
        return car(scene, x, z, oncoming)
    return large_vehicle(scene, x, z, kind)


def car(scene: SceneContext, x, z, front) -> Drawer:
    """A car whose back (or ``front``) faces the camera, and its side."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    w, h, length = rng.uniform(1.7, 1.95), rng.uniform(1.35, 1.6), \
        rng.uniform(3.9, 4.8)
    body = pick_color(rng, style.colors['car'], style)
    dark = np.array([0.05, 0.05, 0.06], np.float32)
    glass = np.array([0.1, 0.12, 0.15], np.float32) + 0.25 * (
        style.game_look * np.array([0.2, 0.4, 0.6], np.float32))
    belt = 0.6 * h
    xs = x - np.sign(x) * w / 2   # the side that faces the camera
    lit = 1 + 0.3 * style.sun
    parts = [
        (CAR, body * 1.1, 'poly', camera.quad(
            [x - w / 2, x + w / 2, x + w / 2, x - w / 2], [belt] * 4,
            [z, z, z + length, z + length])),
        (CAR, body * lit, 'poly', camera.side_face(xs, 0.25, belt, z,
                                                   z + length)),
        (CAR, glass, 'poly', camera.quad(
            [xs] * 4, [belt, h, h, belt],
            [z + 0.15 * length, z + 0.3 * length, z + 0.75 * length,
             z + 0.9 * length])),
    ]
    if camera.cam_h > h:   # roof seen from above
        parts.append((CAR, body * 1.15, 'poly', camera.quad(
            [x - 0.38 * w, x + 0.38 * w, x + 0.38 * w, x - 0.38 * w],
            [h] * 4, [z + 0.15 * length] * 2 + [z + 0.7 * length] * 2)))
    for wz in (z + 0.2 * length, z + 0.8 * length):   # side wheels
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        parts.append((CAR, dark, 'poly', camera.quad(
            [xs] * 12, 0.32 + 0.32 * np.sin(angles),
            wz + 0.32 * np.cos(angles))))
    # the face towards the camera: bumper, body, cabin, window, lamps
    face = body * 0.85
    lamp = (np.array([1.0, 0.95, 0.8], np.float32) if front else
            np.array([0.85, 0.05, 0.05], np.float32))
    parts += [
        (CAR, dark, 'poly', camera.box_face(
            x - w / 2 + 0.1, x - w / 2 + 0.4, 0, 0.3, z)),
        (CAR, dark, 'poly', camera.box_face(
            x + w / 2 - 0.4, x + w / 2 - 0.1, 0, 0.3, z)),
        (CAR, face, 'poly', camera.box_face(x - w / 2, x + w / 2, 0.2, belt,
                                            z)),
        (CAR, face * 0.95, 'poly', camera.quad(
            [x - 0.45 * w, x + 0.45 * w, x + 0.36 * w, x - 0.36 * w],
            [belt, belt, h, h], [z] * 4)),
        (CAR, glass, 'poly', camera.quad(
            [x - 0.4 * w, x + 0.4 * w, x + 0.33 * w, x - 0.33 * w],
            [belt + 0.05, belt + 0.05, h - 0.06, h - 0.06], [z] * 4)),
        (CAR, dark * 2, 'poly', camera.box_face(x - w / 2, x + w / 2, 0.2,
                                                0.32, z)),
        (CAR, lamp, 'poly', camera.box_face(x - w / 2 + 0.05,
                                            x - w / 2 + 0.35,
                                            belt - 0.2, belt - 0.06, z)),
        (CAR, lamp, 'poly', camera.box_face(x + w / 2 - 0.35,
                                            x + w / 2 - 0.05,
                                            belt - 0.2, belt - 0.06, z)),
    ]
    if front:   # grille
        parts.append((CAR, dark * 3, 'poly', camera.box_face(
            x - 0.25 * w, x + 0.25 * w, 0.35, belt - 0.1, z)))
    shadow(scene, x, z, w, length)
    return shape_drawer(scene, z, parts)


def large_vehicle(scene: SceneContext, x, z, kind) -> Drawer:
    """A bus or a truck (``kind``) seen from behind and the side."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    label = BUS if kind == 'bus' else TRUCK
    w = rng.uniform(2.4, 2.6)
    h = rng.uniform(3.0, 3.5) if kind == 'bus' else rng.uniform(3.2, 3.8)
    length = rng.uniform(10, 12.5) if kind == 'bus' else rng.uniform(6, 8)
    body = pick_color(rng, style.colors[kind], style)
    dark = np.array([0.05, 0.05, 0.06], np.float32)
    glass = np.array([0.12, 0.14, 0.18], np.float32)
    xs = x - np.sign(x) * w / 2
    lit = 1 + 0.3 * style.sun
    parts = [(label, body * lit, 'poly',
              camera.side_face(xs, 0.35, h, z, z + length))]
    if kind == 'bus':   # window band along the side and at the back
        parts.append((label, glass, 'poly', camera.side_face(
            xs, 1.3, h - 0.4, z + 0.3, z + length - 0.3)))
    else:               # cab in front of the box
        parts.append((label, body * 0.8, 'poly', camera.side_face(
            xs, 0.35, h - 0.1, z + length - 0.5, z + length + 1.8)))
    for wz in (z + 0.15 * length, z + 0.85 * length):
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        parts.append((label, dark, 'poly', camera.quad(
            [xs] * 12, 0.45 + 0.45 * np.sin(angles),
            wz + 0.45 * np.cos(angles))))
    parts.append((label, body * 0.85, 'poly',
                  camera.box_face(x - w / 2, x + w / 2, 0.3, h, z)))
    if kind == 'bus':
        parts.append((label, glass, 'poly', camera.box_face(
            x - 0.42 * w, x + 0.42 * w, h * 0.55, h - 0.25, z)))
    else:   # cargo doors
        parts.append((label, body * 0.6, 'line', camera.box_face(
            x, x, 0.4, h - 0.1, z)[[0, 2]], 0.06 * camera.scale(z)))
    parts += [
        (label, dark, 'poly', camera.box_face(x - w / 2, x + w / 2, 0.1,
                                              0.45, z)),
        (label, np.array([0.85, 0.05, 0.05], np.float32), 'poly',
         camera.box_face(x - w / 2 + 0.05, x - w / 2 + 0.3, 0.6, 0.9, z)),
        (label, np.array([0.85, 0.05, 0.05], np.float32), 'poly',
         camera.box_face(x + w / 2 - 0.3, x + w / 2 - 0.05, 0.6, 0.9, z)),
    ]
    shadow(scene, x, z, w, length)
    return shape_drawer(scene, z, parts)


def shadow(scene: SceneContext, x, z, w, length) -> None:
    """A darkened footprint on the ground (hard in sunny styles), painted
    at once under a vehicle of width ``w`` and ``length`` at (x, z)."""
    camera, canvas = scene.camera, scene.canvas
    strength = 0.25 + 0.6 * scene.style.sun
    offset = 0.6 * scene.style.sun * scene.street.sun_side * -1
    pts = camera.quad([x - w / 2 - 0.1 + offset, x + w / 2 + 0.1 + offset,
                       x + w / 2 + 0.1 + offset, x - w / 2 - 0.1 + offset],
                      [0] * 4, [z - 0.2, z - 0.2, z + length, z + length])
    x0, y0 = np.floor(np.maximum(pts.min(0), 0)).astype(int)
    x1, y1 = np.ceil(np.minimum(pts.max(0),
                                (camera.width, camera.height))).astype(int)
    if x1 <= x0 or y1 <= y0:
        return
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((pts - (x0, y0)) * 16).astype(np.int32)],
                 1, cv2.LINE_8, 4)
    roi = (slice(y0, y1), slice(x0, x1))
    label = canvas.label[roi]
    ground = (mask > 0) & ((label == ROAD) | (label == SIDEWALK)
                           | (label == TERRAIN))
    canvas.img[roi][ground] *= 1 - strength * 0.6
