"""People: pedestrians on the sidewalks, cyclists and motorcyclists on
the road. Each factory returns ``(depth, draw)`` (see ``shapes.py``)."""
import numpy as np

from .context import SceneContext
from .shapes import Drawer, shape_drawer
from .style import pick_color
from .train_ids import BICYCLE, MOTORCYCLE, PERSON, RIDER


def person(scene: SceneContext, x, z) -> Drawer:
    """A pedestrian facing the camera at (x, z), mid-stride."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    h = rng.uniform(1.55, 1.95)
    width = rng.uniform(0.36, 0.48)
    shirt = pick_color(rng, style.colors['clothes'], style)
    trousers = pick_color(rng, style.colors['trousers'], style)
    skin = pick_color(rng, style.colors['skin'], style, 0.05)
    hair = np.array([0.1, 0.07, 0.05], np.float32) * rng.uniform(0.5, 3)
    stride = rng.uniform(-0.2, 0.2)
    hip, shoulder = 0.5 * h, 0.81 * h

    def face(xs, ys):
        return camera.quad(np.asarray(xs) + x, ys, [z] * len(xs))

    parts = [
        (PERSON, trousers, 'poly', face(
            [-width * 0.4, -0.02, -0.02 + stride * 0.3, -0.12 + stride],
            [hip, hip, 0, 0])),
        (PERSON, trousers * 0.85, 'poly', face(
            [0.02, width * 0.4, 0.12 - stride, 0.02 - stride * 0.3],
            [hip, hip, 0, 0])),
        (PERSON, shirt * 0.8, 'poly', face(
            [-width / 2 - 0.06, -width / 2, -width / 2 - 0.04 - stride / 3,
             -width / 2 - 0.1 - stride / 3],
            [shoulder, shoulder, 0.47 * h, 0.47 * h])),
        (PERSON, shirt * 0.8, 'poly', face(
            [width / 2, width / 2 + 0.06, width / 2 + 0.1 + stride / 3,
             width / 2 + 0.04 + stride / 3],
            [shoulder, shoulder, 0.47 * h, 0.47 * h])),
        (PERSON, shirt, 'poly', face(
            [-width / 2, width / 2, width * 0.4, -width * 0.4],
            [shoulder, shoulder, hip - 0.05, hip - 0.05])),
        (PERSON, skin, 'poly', face([-0.05, 0.05, 0.05, -0.05],
                                    [shoulder - 0.02, shoulder - 0.02,
                                     shoulder + 0.06, shoulder + 0.06])),
    ]
    angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    head_y = h - 0.12
    parts.append((PERSON, skin, 'poly', face(
        0.1 * np.cos(angles), head_y + 0.12 * np.sin(angles))))
    parts.append((PERSON, hair, 'poly', face(
        0.105 * np.cos(angles[:8]), head_y + 0.02 + 0.11 * np.sin(
            angles[:8]))))
    return shape_drawer(scene, z, parts, grain=0.06)


def cyclist(scene: SceneContext, x, z) -> Drawer:
    """A bicycle or motorcycle seen from the side, crossing the view."""
    rng, style, camera = scene.rng, scene.style, scene.camera
    motor = rng.random() < 0.35
    label = MOTORCYCLE if motor else BICYCLE
    frame = pick_color(rng, style.colors['bike'], style)
    dark = np.array([0.06, 0.06, 0.07], np.float32)
    r = 0.33 if not motor else 0.32
    base = 1.05 if not motor else 1.4
    d = rng.choice([-1, 1])   # direction of travel
    px = camera.scale(z)
    back, front = x - d * base / 2, x + d * base / 2

    def pt(xx, yy):
        return np.stack(camera.project(xx, yy, z))

    seat, bar = pt(x - d * 0.15, 0.95), pt(front - d * 0.1, 1.05)
    hub_b, hub_f, crank = pt(back, r), pt(front, r), pt(x, r)
    parts = [
        (label, dark, 'ring', (hub_b, r * px, (0.06 if not motor else 0.12)
                               * px)),
        (label, dark, 'ring', (hub_f, r * px, (0.06 if not motor else 0.12)
                               * px)),
    ]
    if motor:
        parts.append((label, frame, 'poly', np.stack([
            pt(back + d * 0.2, 0.5), pt(front - d * 0.25, 0.55),
            pt(front - d * 0.35, 0.95), pt(x - d * 0.3, 0.85)])))
    else:
        for a, b in ((hub_b, seat), (seat, crank), (crank, hub_b),
                     (seat, bar), (crank, bar), (bar, hub_f)):
            parts.append((label, frame, 'line', np.stack([a, b]),
                          0.05 * px))
    shirt = pick_color(rng, style.colors['clothes'], style)
    trousers = pick_color(rng, style.colors['trousers'], style)
    skin = pick_color(rng, style.colors['skin'], style, 0.05)
    hip = pt(x - d * 0.15, 1.0)
    shoulder = pt(x + d * 0.1, 1.55)
    parts += [
        (RIDER, trousers, 'line', np.stack([hip, crank]), 0.14 * px),
        (RIDER, shirt, 'line', np.stack([hip, shoulder]), 0.32 * px),
        (RIDER, shirt * 0.8, 'line', np.stack([shoulder, bar]), 0.09 * px),
    ]
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    head = np.stack(camera.project(x + d * 0.18 + 0.1 * np.cos(angles),
                                   1.78 + 0.12 * np.sin(angles),
                                   np.full(12, z)), axis=1)
    parts.append((RIDER, skin, 'poly', head))
    return shape_drawer(scene, z, parts)
