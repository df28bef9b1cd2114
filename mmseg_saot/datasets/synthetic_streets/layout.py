"""The street layout of a scene: road, sides, building blocks, skyline,
lane markings.

The street is sampled before anything is painted; the lane markings are
sampled while the road is painted (``ground.py``), after the sky and asphalt
colours, and the objects are placed later (``placement.py``).
"""
from dataclasses import dataclass
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from .style import DomainStyle, pick_color


@dataclass(frozen=True)
class Street:
    """A straight street seen from its middle.

    Attributes:
        z_end: depth (metres) where the street ends at the skyline.
        road: (left, right) X of the kerbs, metres.
        sun_side: the side (-1 left, 1 right) whose facades are lit.
        sides: per side (-1, 1), a dict with ``sign``, ``edge`` (kerb X),
            ``verge`` and ``sidewalk`` widths, ``outer`` (X of the facade or
            boundary), ``built`` and either ``blocks`` (see
            :func:`make_blocks`) or ``boundary`` ((kind, height)) and
            ``boundary_color``; plus ``ground`` and ``grass`` colours.
        skyline: see :func:`make_skyline`.
    """
    z_end: float
    road: Tuple[float, float]
    sun_side: int
    sides: Dict[int, Dict]
    skyline: Dict[str, np.ndarray]


def sample_street(rng, style: DomainStyle) -> Street:
    """Draw the street: its length, road, lit side, both sides, skyline."""
    z_end = rng.uniform(70, 160)
    road_w = rng.uniform(6.5, 14.0)
    left = rng.uniform(0.3, 0.7) * road_w
    road = (-left, road_w - left)
    sun_side = rng.choice([-1, 1])
    sides = {s: make_side(rng, style, road, z_end, s) for s in (-1, 1)}
    skyline = make_skyline(rng, style)
    return Street(z_end, road, sun_side, sides, skyline)


def make_side(rng, style: DomainStyle, road: Tuple[float, float],
              z_end: float, s: int) -> Dict:
    """One side of the street (``s`` = -1 left, 1 right) from the kerb out:
    verge, sidewalk, then buildings or a fence, wall or hedge."""
    edge = road[0] if s < 0 else road[1]
    side = dict(sign=s, edge=edge,
                verge=rng.uniform(0.8, 2.0) if rng.random() < style.p_verge
                else 0.0,
                sidewalk=rng.uniform(1.5, 4.0))
    side['outer'] = edge + s * (side['verge'] + side['sidewalk'])
    side['built'] = rng.random() < style.p_buildings
    if side['built']:
        side['blocks'] = make_blocks(rng, style, z_end)
    else:
        kind = rng.choice(['fence', 'wall', 'hedge', 'none'],
                          p=[0.35, 0.25, 0.2, 0.2])
        side['boundary'] = (kind, {'fence': rng.uniform(1.0, 1.8),
                                   'wall': rng.uniform(0.8, 2.4),
                                   'hedge': rng.uniform(0.8, 1.5),
                                   'none': 0.0}[kind])
        side['boundary_color'] = pick_color(
            rng, style.colors['fence' if kind == 'fence' else
                              'wall' if kind == 'wall' else 'vegetation'],
            style)
    side['ground'] = pick_color(rng, style.colors['sidewalk'], style)
    side['grass'] = pick_color(rng, style.colors['terrain'], style)
    return side


def make_blocks(rng, style: DomainStyle,
                z_end: float) -> Dict[str, np.ndarray]:
    """Buildings along one side: z ranges, heights and facade params."""
    z0s, z1s = [], []
    z = -5.0
    while z < z_end + 30:
        if z > 10 and rng.random() < 0.15:
            z += rng.uniform(3, 8)  # an alley: sky and ground show
        length = rng.uniform(8, 30)
        z0s.append(z)
        z1s.append(z + length)
        z += length
    n = len(z0s)
    colors = np.stack([pick_color(rng, style.colors['building'], style)
                       for _ in range(n)])
    glass = np.stack([pick_color(rng, style.colors['glass'], style, 0.1)
                      for _ in range(n)])
    return dict(
        z0=np.array(z0s, np.float32), z1=np.array(z1s, np.float32),
        height=rng.uniform(7, 30, n).astype(np.float32),
        color=colors, glass=glass,
        floor=rng.uniform(2.9, 3.6, n).astype(np.float32),
        column=rng.uniform(2.2, 3.6, n).astype(np.float32),
        win_w=rng.uniform(0.35, 0.6, n).astype(np.float32),
        win_h=rng.uniform(0.4, 0.6, n).astype(np.float32),
        shop=(rng.random(n) < 0.5),
        brick=(rng.random(n) < style.brick),
    )


def make_skyline(rng, style: DomainStyle) -> Dict[str, np.ndarray]:
    """The end of the street: buildings or trees across X at z_end."""
    xs, x = [], -250.0
    while x < 250:
        xs.append(x)
        x += rng.uniform(8, 30)
    xs.append(x)
    n = len(xs) - 1
    trees = rng.random(n) < (1 - style.p_buildings) * 0.8
    heights = np.where(trees, rng.uniform(6, 14, n), rng.uniform(8, 40, n))
    colors = np.stack([
        pick_color(rng, style.colors['vegetation' if t else 'building'], style)
        for t in trees])
    return dict(x=np.array(xs, np.float32),
                height=heights.astype(np.float32), trees=trees,
                color=colors)


class LaneMarkings(NamedTuple):
    """Lanes of the road and the markings painted on it (metres)."""
    left: float                # X of the left kerb
    lane_w: float              # width of one lane
    count: int                 # number of lanes, >= 2
    phase: float               # offset of the 9 m dash pattern along Z
    yellow_centre: bool        # a double solid yellow centre line
    edge_lines: bool           # solid white lines along both kerbs
    zebra_z: Optional[float]   # near edge of a zebra crossing, or None


def sample_lane_markings(rng, style: DomainStyle, road: Tuple[float, float],
                         z_near: float) -> LaneMarkings:
    """Draw the lanes and markings of ``road``; a zebra crossing starts
    between ``z_near + 2`` and 30 m."""
    left, right = road
    width = right - left
    count = max(2, int(round(width / rng.uniform(2.9, 3.6))))
    lane_w = width / count
    phase = rng.uniform(0, 9)
    yellow_centre = rng.random() < style.yellow_centre_line
    edge_lines = rng.random() < 0.6
    zebra_z = rng.uniform(z_near + 2, 30) if rng.random() < 0.35 else None
    return LaneMarkings(left, lane_w, count, phase, yellow_centre, edge_lines,
                        zebra_z)
