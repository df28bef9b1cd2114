"""The appearance and layout knobs of a domain: :class:`DomainStyle`.

:data:`SOURCE_STYLE` ("game", GTA5-like) and :data:`TARGET_STYLE` ("real",
Cityscapes-like) are the two presets of the demo data; :func:`blend_styles`
interpolates between them; :func:`pick_color` draws one jittered colour from
a style's options.
"""
import colorsys
import dataclasses
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

RGB = Tuple[int, int, int]


@dataclass(frozen=True)
class DomainStyle:
    """Every knob of a domain's appearance and layout.

    Colours are RGB 0..255; several options per key are picked at random per
    instance and jittered by ``hue_jitter`` (degrees) and ``value_jitter``
    (relative brightness). Rates are expected counts per 10 m of street.
    """
    name: str
    colors: Mapping[str, Tuple[RGB, ...]]
    hue_jitter: float
    value_jitter: float
    # textures
    brick: float            # probability that a facade has brick courses
    brick_contrast: float   # darkening of mortar joints
    facade_grain: float     # amplitude of large stains on facades
    ledges: float           # brightness of floor ledges (0 = none)
    window_frames: float    # brightness of window frames (0 = none)
    game_look: float        # 0..1: picket fences (>= 0.5) instead of mesh,
                            # bluish car glass, light bark, vivid signs
    tile_size: float        # sidewalk paving tile, metres
    tile_contrast: float
    asphalt_grain: float    # fine asphalt noise amplitude
    asphalt_patches: float  # large repaired patches amplitude
    leaf_grain: float       # foliage texture amplitude
    leaf_scale: float       # foliage texture size, pixels
    cel_shading: float      # 0 = smooth foliage, 1 = posterised (cartoon)
    yellow_centre_line: float  # probability of a yellow centre line
    # lighting and camera
    sun: float              # lit/shaded contrast and hard shadows
    cloud_cover: float
    tint: Tuple[float, float, float]
    saturation: float
    contrast: float
    gamma: float
    bloom: float
    vignette: float
    blur_sigma: float       # pixels
    noise_sigma: float      # in 0..1 intensity units
    ego_hood: float         # probability of the ego-vehicle hood
    # layout: class proportions
    p_buildings: float      # probability that a street side is built up
    p_verge: float          # probability of a grass verge beside the road
    tree_rate: float
    park_tree_rate: float
    car_rate: float
    parked_rate: float
    p_large_vehicle: float
    person_rate: float
    p_cyclist: float
    pole_rate: float


SOURCE_STYLE = DomainStyle(
    name='game',
    colors={
        'road': ((92, 86, 80), (100, 92, 84), (86, 82, 78)),
        'sidewalk': ((206, 186, 150), (196, 170, 140), (214, 200, 168)),
        'curb': ((226, 214, 190),),
        'building': ((188, 98, 66), (214, 166, 92), (226, 204, 160),
                     (160, 70, 52), (200, 130, 90)),
        'glass': ((110, 184, 226), (96, 166, 214)),
        'wall': ((196, 168, 124), (176, 150, 112)),
        'fence': ((140, 96, 56), (160, 110, 64)),
        'pole': ((64, 76, 56), (90, 90, 70)),
        'light_box': ((52, 60, 30),),
        'vegetation': ((72, 160, 36), (96, 170, 40), (60, 140, 44)),
        'terrain': ((150, 184, 60), (138, 172, 52)),
        'sky_top': ((40, 120, 232),),
        'sky_horizon': ((160, 212, 250),),
        'cloud': ((255, 255, 255),),
        'car': ((220, 30, 30), (250, 200, 20), (40, 90, 230), (250, 120, 20),
                (120, 220, 40), (240, 240, 240), (30, 30, 30)),
        'bus': ((250, 190, 20), (220, 40, 30)),
        'truck': ((230, 110, 30), (60, 140, 220), (240, 240, 240)),
        'clothes': ((220, 40, 40), (40, 120, 230), (250, 210, 30),
                    (40, 180, 70), (240, 240, 240), (250, 120, 180)),
        'trousers': ((40, 60, 140), (60, 50, 40), (220, 200, 150)),
        'skin': ((236, 190, 150), (190, 130, 90), (120, 80, 56)),
        'bike': ((230, 30, 30), (30, 180, 220)),
    },
    hue_jitter=6.0, value_jitter=0.10,
    brick=0.7, brick_contrast=0.30, facade_grain=0.04, ledges=0.0,
    window_frames=0.9, game_look=1.0, tile_size=1.2, tile_contrast=0.22,
    asphalt_grain=0.05, asphalt_patches=0.05,
    leaf_grain=0.35, leaf_scale=3.0, cel_shading=1.0,
    yellow_centre_line=0.9,
    sun=0.45, cloud_cover=0.25, tint=(1.04, 1.0, 0.92), saturation=1.25,
    contrast=1.15, gamma=0.95, bloom=0.35, vignette=0.0, blur_sigma=0.0,
    noise_sigma=0.0, ego_hood=0.0,
    p_buildings=0.55, p_verge=0.5, tree_rate=1.6, park_tree_rate=3.5,
    car_rate=0.6, parked_rate=0.8, p_large_vehicle=0.08,
    person_rate=0.5, p_cyclist=0.15, pole_rate=0.9,
)

TARGET_STYLE = DomainStyle(
    name='real',
    colors={
        'road': ((84, 88, 96), (92, 94, 100), (76, 80, 88)),
        'sidewalk': ((142, 128, 138), (150, 146, 150), (128, 124, 130)),
        'curb': ((170, 170, 172),),
        'building': ((160, 156, 150), (188, 182, 170), (128, 122, 118),
                     (206, 196, 172), (150, 158, 168)),
        'glass': ((48, 54, 62), (60, 66, 72)),
        'wall': ((150, 150, 146), (124, 128, 130)),
        'fence': ((96, 104, 110), (120, 124, 120)),
        'pole': ((110, 112, 116), (80, 84, 90)),
        'light_box': ((40, 42, 46),),
        'vegetation': ((58, 84, 52), (68, 96, 58), (50, 74, 56)),
        'terrain': ((104, 118, 78), (112, 116, 86)),
        'sky_top': ((184, 194, 208),),
        'sky_horizon': ((226, 230, 234),),
        'cloud': ((242, 244, 246),),
        'car': ((60, 62, 66), (190, 192, 196), (230, 230, 230), (24, 26, 30),
                (40, 50, 90), (120, 30, 34), (140, 140, 136)),
        'bus': ((230, 228, 220), (40, 90, 160)),
        'truck': ((220, 220, 214), (90, 96, 104)),
        'clothes': ((30, 32, 40), (70, 74, 84), (110, 90, 70), (150, 40, 40),
                    (200, 196, 186), (40, 60, 100)),
        'trousers': ((30, 34, 44), (50, 50, 54), (90, 84, 76)),
        'skin': ((220, 180, 150), (170, 120, 90), (110, 76, 56)),
        'bike': ((40, 40, 44), (150, 150, 156)),
    },
    hue_jitter=4.0, value_jitter=0.14,
    brick=0.12, brick_contrast=0.15, facade_grain=0.10, ledges=0.18,
    window_frames=0.0, game_look=0.0, tile_size=0.35, tile_contrast=0.14,
    asphalt_grain=0.12, asphalt_patches=0.10,
    leaf_grain=0.55, leaf_scale=1.2, cel_shading=0.0,
    yellow_centre_line=0.0,
    sun=0.1, cloud_cover=0.9, tint=(0.94, 1.0, 0.98), saturation=0.72,
    contrast=0.85, gamma=1.1, bloom=0.0, vignette=0.35, blur_sigma=0.8,
    noise_sigma=0.025, ego_hood=0.8,
    p_buildings=0.8, p_verge=0.3, tree_rate=0.9, park_tree_rate=2.0,
    car_rate=1.1, parked_rate=1.6, p_large_vehicle=0.12,
    person_rate=1.5, p_cyclist=0.35, pole_rate=1.2,
)

STYLES: Dict[str, DomainStyle] = {'source': SOURCE_STYLE,
                                  'target': TARGET_STYLE}


def blend_styles(a: DomainStyle, b: DomainStyle, t: float) -> DomainStyle:
    """Interpolate two styles: ``t = 0`` gives ``a``, ``t = 1`` gives ``b``.

    Numbers, tuples of numbers and colours are interpolated linearly (colour
    options are paired cyclically, as many as the nearer style has), so e.g.
    ``blend_styles(SOURCE_STYLE, TARGET_STYLE, 0.5)`` is a target domain with
    half the shift; ``t > 1`` exaggerates it (colours are clipped to 0..255).
    """
    def lerp(x, y):
        return (1 - t) * x + t * y

    def blend_options(x, y):
        count = len(x) if t < 0.5 else len(y)
        return tuple(
            tuple(int(np.clip(round(lerp(p, q)), 0, 255))
                  for p, q in zip(x[i % len(x)], y[i % len(y)]))
            for i in range(count))

    values = {}
    for field in dataclasses.fields(DomainStyle):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if field.name == 'name':
            values['name'] = x if t == 0 else y if t == 1 else f'{x}~{y}@{t:g}'
        elif field.name == 'colors':
            values['colors'] = {key: blend_options(x[key], y[key])
                                for key in x}
        elif isinstance(x, tuple):
            values[field.name] = tuple(lerp(p, q) for p, q in zip(x, y))
        else:
            values[field.name] = lerp(x, y)
    return DomainStyle(**values)


def pick_color(rng, options: Sequence[RGB], style: DomainStyle,
               value_jitter: float = None) -> np.ndarray:
    """A colour option with hue and value jitter, float32 RGB in 0..1."""
    r, g, b = (c / 255.0 for c in options[rng.integers(len(options))])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h = (h + rng.uniform(-1, 1) * style.hue_jitter / 360.0) % 1.0
    jitter = style.value_jitter if value_jitter is None else value_jitter
    v = min(1.0, v * (1 + rng.uniform(-1, 1) * jitter))
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32)
