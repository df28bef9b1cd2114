"""Where the objects of a scene go: traffic in the lanes, parked cars,
pedestrians, poles and trees along each side, perhaps a cyclist.

Positions along the street are Poisson processes with the style's rates
(expected counts per 10 m); each object draws its own parameters as soon
as it is placed, so the placement order is part of the output.
"""
from typing import Dict, List

from .context import SceneContext
from .layout import LaneMarkings
from .people import cyclist, person
from .roadside import pole, tree
from .shapes import Drawer
from .vehicles import vehicle


def poisson_positions(rng, rate: float, start: float, stop: float,
                      min_gap: float) -> List[float]:
    """Positions along [start, stop) metres, ``rate`` per 10 m on average,
    at least ``min_gap`` apart."""
    positions, z = [], start
    if rate <= 0:
        return positions
    while True:
        z += min_gap + rng.exponential(10.0 / rate)
        if z >= stop:
            return positions
        positions.append(z)


def place_objects(scene: SceneContext, lanes: LaneMarkings) -> List[Drawer]:
    """(depth, draw) for every object of the scene."""
    rng, style, street = scene.rng, scene.style, scene.street
    z_min = scene.camera.z_near + 0.5
    z_max = min(street.z_end - 5, 75.0)
    # with three lanes or more, an outer lane may be for parking
    parking = {s: lanes.count >= 3 and rng.random() < 0.6 for s in (-1, 1)}
    objects = moving_traffic(scene, lanes, parking, z_min, z_max)
    for s, side in street.sides.items():
        objects += side_objects(scene, side, parking[s], z_min, z_max)
    if rng.random() < style.p_cyclist:
        x = rng.uniform(street.road[0] + 1, street.road[1] - 1)
        z = rng.uniform(z_min + 2, 30)
        objects.append(cyclist(scene, x, z))
    return objects


def moving_traffic(scene: SceneContext, lanes: LaneMarkings,
                   parking: Dict[int, bool], z_min: float,
                   z_max: float) -> List[Drawer]:
    """Vehicles in every lane not used for parking; lanes left of the
    centre come towards the camera."""
    rng, style = scene.rng, scene.style
    objects = []
    for k in range(int(parking[-1]), lanes.count - int(parking[1])):
        x = lanes.left + lanes.lane_w * (k + 0.5) + rng.uniform(-0.3, 0.3)
        oncoming = k < lanes.count // 2
        for z in poisson_positions(rng, style.car_rate, z_min - 1, z_max,
                                   6.0):
            objects.append(vehicle(scene, x, z, oncoming))
    return objects


def side_objects(scene: SceneContext, side: Dict, parking: bool,
                 z_min: float, z_max: float) -> List[Drawer]:
    """Parked cars along the kerb (if ``parking``), pedestrians on the
    sidewalk, poles at the kerb, trees on the verge or sidewalk, and a park
    of trees behind an open side."""
    rng, style = scene.rng, scene.style
    s = side['sign']
    objects = []
    if parking:
        x = side['edge'] - s * 1.1
        for z in poisson_positions(rng, style.parked_rate, z_min, z_max,
                                   5.0):
            objects.append(vehicle(scene, x, z, False, parked=True))
    walk0 = side['edge'] + s * side['verge']
    walk1 = side['edge'] + s * (side['verge'] + side['sidewalk'])
    for z in poisson_positions(rng, style.person_rate, z_min - 0.5, 60.0,
                               1.0):
        x = rng.uniform(min(walk0, walk1) + 0.3, max(walk0, walk1) - 0.3)
        objects.append(person(scene, x, z))
    for z in poisson_positions(rng, style.pole_rate * 0.5, z_min, z_max,
                               8.0):
        objects.append(pole(scene, side['edge'] + s * 0.4, z, s))
    tree_x = (side['edge'] + s * side['verge'] / 2 if side['verge'] > 0
              else walk1 - s * 0.8)
    for z in poisson_positions(rng, style.tree_rate * 0.5, z_min, z_max,
                               5.0):
        objects.append(tree(scene, tree_x, z))
    if not side['built']:
        for z in poisson_positions(rng, style.park_tree_rate * 0.5, z_min,
                                   z_max, 2.0):
            x = side['outer'] + s * rng.uniform(1.5, 18)
            objects.append(tree(scene, x, z, rng.uniform(1.0, 1.6)))
    return objects
