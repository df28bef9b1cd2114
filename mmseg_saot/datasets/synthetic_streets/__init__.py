"""Procedural two-domain street scenes: the embedded demo data set.

A scene is a pinhole camera looking down a straight street. The background
(road, sidewalks, grass verges, building facades, fences and walls, the
skyline at the end of the street, the sky) is ray-cast per pixel, so facades,
windows, paving and lane markings are in exact perspective and the label map
comes from the same computation as the colours. Objects (cars, buses,
trucks, pedestrians, cyclists, poles with signs, lamps and traffic lights,
trees) are polygons placed in metres on the ground and projected, so their
size follows their depth; they are painted far to near and hidden behind
nearer background surfaces by a depth test.

Two :class:`DomainStyle` presets differ in what a feature extractor sees:

* :data:`SOURCE_STYLE` ("game", GTA5-like): sunny, saturated warm palette,
  brick facades with bright reflective glass, large pale paving tiles, a
  yellow centre line, vivid cars and clothes, cel-shaded foliage, crisp
  edges with bloom, more vegetation and fewer cars and people.
* :data:`TARGET_STYLE` ("real", Cityscapes-like): overcast, desaturated cool
  palette, plaster facades with ledges and dark glass, small grey pavers,
  white markings, grey/black/silver cars, fine leafy texture, sensor noise,
  lens blur, vignetting, the ego-vehicle hood at the bottom (label id 1,
  ignored) and busier streets.

:func:`blend_styles` interpolates two styles, so the strength of the shift
can be tuned. Only numpy and OpenCV are used; nothing here imports mmseg.

Modules, in the order a scene is made: ``style`` (the knobs), ``camera``
and ``layout`` (sampled up front, with ``textures``, into a
``context.SceneContext`` holding the ``canvas``), then the painters
``backdrop`` (sky, skyline), ``ground`` and ``facades``, the objects
(``placement`` of ``vehicles``, ``people`` and ``roadside`` objects, drawn
by ``shapes``), and ``postprocess`` (hood and camera response); ``scene``
runs them in order. Class ids are in ``train_ids``.
"""
from .scene import HEIGHT, WIDTH, Seed, render_scene
from .style import (RGB, SOURCE_STYLE, STYLES, TARGET_STYLE, DomainStyle,
                    blend_styles)

#: Bump whenever the pictures or labels for a given seed change.
GENERATOR_VERSION = '1'

__all__ = [
    'GENERATOR_VERSION', 'WIDTH', 'HEIGHT', 'RGB', 'Seed', 'DomainStyle',
    'SOURCE_STYLE', 'TARGET_STYLE', 'STYLES', 'blend_styles', 'render_scene'
]
