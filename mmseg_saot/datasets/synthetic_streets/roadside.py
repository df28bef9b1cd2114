"""Roadside objects: poles (with signs, lamps or traffic lights) and
trees. Each factory returns ``(depth, draw)`` (see ``shapes.py``)."""
from typing import List

import numpy as np

from .context import SceneContext
from .shapes import Drawer, Part, shape_drawer
from .style import pick_color
from .train_ids import LIGHT, POLE, SIGN, VEGETATION


def pole(scene: SceneContext, x, z, s) -> Drawer:
    """A pole, with a sign, a lamp arm or a traffic light on top."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    kind = rng.choice(['sign', 'lamp', 'light', 'plain'],
                      p=[0.4, 0.25, 0.25, 0.1])
    color = pick_color(rng, style.colors['pole'], style)
    height = {'sign': rng.uniform(2.6, 3.4), 'lamp': rng.uniform(6, 9),
              'light': rng.uniform(3.4, 4.4),
              'plain': rng.uniform(3, 5)}[kind]
    width = rng.uniform(0.1, 0.18)
    parts = [(POLE, color, 'poly', camera.box_face(x - width / 2,
                                                   x + width / 2, 0,
                                                   height, z))]
    if kind == 'lamp':
        reach = rng.uniform(1.2, 2.5) * -s
        parts.append((POLE, color, 'poly', camera.quad(
            [x, x + reach, x + reach, x],
            [height - 0.1, height + 0.15, height + 0.05, height - 0.3],
            [z] * 4)))
        parts.append((POLE, color * 1.4, 'poly', camera.box_face(
            x + reach - 0.3 * np.sign(reach), x + reach + 0.1 * np.sign(
                reach), height - 0.05, height + 0.15, z)))
    elif kind == 'sign':
        parts += sign_plate(scene, x, height - 0.45, z)
    elif kind == 'light':
        parts += traffic_light(scene, x, height, z)
        if rng.random() < 0.4:   # mast arm over the road
            reach = rng.uniform(2.5, 5.0) * -s
            parts.append((POLE, color, 'poly', camera.box_face(
                min(x, x + reach), max(x, x + reach), height + 0.3,
                height + 0.42, z)))
            parts += traffic_light(scene, x + reach, height + 0.35, z)
    return shape_drawer(scene, z, parts, grain=0.05)


def sign_plate(scene: SceneContext, x, y, z) -> List[Part]:
    """The parts of a traffic sign centred at height ``y``: a circle,
    triangle, square or diamond plate."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    sat = 0.8 + 0.2 * style.game_look
    red = np.array([0.85, 0.08, 0.08], np.float32) * sat
    blue = np.array([0.1, 0.3, 0.8], np.float32) * sat
    white = np.array([0.95, 0.95, 0.95], np.float32)
    yellow = np.array([0.95, 0.8, 0.1], np.float32) * sat
    shape = rng.choice(['circle', 'triangle', 'square', 'diamond'])
    size = rng.uniform(0.3, 0.4)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)

    def face(xs, ys):
        return camera.quad(np.asarray(xs) + x, np.asarray(ys) + y,
                           [z] * len(xs))

    if shape == 'circle':
        return [(SIGN, red, 'poly', face(size * np.cos(angles),
                                         size * np.sin(angles))),
                (SIGN, white if rng.random() < 0.6 else blue, 'poly',
                 face(0.75 * size * np.cos(angles),
                      0.75 * size * np.sin(angles)))]
    if shape == 'triangle':
        tri = np.array([[-1, -0.6], [1, -0.6], [0, 1.1]]) * size
        return [(SIGN, red, 'poly', face(tri[:, 0], tri[:, 1])),
                (SIGN, white, 'poly', face(tri[:, 0] * 0.6,
                                           tri[:, 1] * 0.6 - 0.03))]
    if shape == 'square':
        sq = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * size
        return [(SIGN, blue, 'poly', face(sq[:, 0], sq[:, 1])),
                (SIGN, white, 'poly', face(sq[:, 0] * 0.25,
                                           sq[:, 1] * 0.7))]
    dia = np.array([[0, -1.2], [1.2, 0], [0, 1.2], [-1.2, 0]]) * size
    return [(SIGN, white, 'poly', face(dia[:, 0], dia[:, 1])),
            (SIGN, yellow, 'poly', face(dia[:, 0] * 0.75,
                                        dia[:, 1] * 0.75))]


def traffic_light(scene: SceneContext, x, y, z) -> List[Part]:
    """The parts of a traffic light whose box starts at height ``y``, one
    of its three lamps lit."""
    style, camera = scene.style, scene.camera
    box = pick_color(scene.rng, style.colors['light_box'], style, 0.05)
    parts = [(LIGHT, box, 'poly', camera.box_face(x - 0.16, x + 0.16, y,
                                                  y + 0.9, z))]
    lit = scene.rng.integers(3)
    colors = ([1.0, 0.1, 0.05], [1.0, 0.7, 0.05], [0.1, 0.95, 0.4])
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    for k, rgb in enumerate(colors):
        rgb = np.array(rgb, np.float32) * (1.0 if k == lit else 0.25)
        cy = y + 0.75 - 0.28 * k
        parts.append((LIGHT, rgb, 'poly', camera.quad(
            x + 0.09 * np.cos(angles), cy + 0.09 * np.sin(angles),
            np.full(10, z))))
    return parts


def tree(scene: SceneContext, x, z, size=1.0) -> Drawer:
    """A tree at (x, z): a trunk and a crown of leafy blobs, ``size``
    times the usual height."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    height = rng.uniform(5, 10) * size
    leaves = pick_color(rng, style.colors['vegetation'], style)
    bark = np.array([0.3, 0.22, 0.15], np.float32) * (
        0.6 + 0.4 * style.game_look)
    trunk_w = rng.uniform(0.2, 0.35) * size
    parts = [(VEGETATION, bark, 'poly', camera.box_face(
        x - trunk_w / 2, x + trunk_w / 2, 0, height * 0.55, z))]
    crown_y, crown_r = height * 0.68, height * rng.uniform(0.22, 0.32)
    angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    for k in range(rng.integers(5, 9)):
        cx = x + rng.uniform(-0.7, 0.7) * crown_r
        cy = crown_y + rng.uniform(-0.5, 0.6) * crown_r
        r = crown_r * rng.uniform(0.45, 0.75)
        # lower blobs darker: light comes from above
        shade = 0.75 + 0.45 * (cy - crown_y + crown_r) / (2 * crown_r)
        parts.append((VEGETATION, leaves * shade, 'poly', camera.quad(
            cx + r * np.cos(angles), cy + r * 0.9 * np.sin(angles),
            np.full(14, z))))
    return shape_drawer(scene, z, parts, leafy=True)
