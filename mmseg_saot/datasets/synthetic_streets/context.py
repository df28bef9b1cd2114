"""What the painters of one scene share: :class:`SceneContext`."""
from dataclasses import dataclass

from .camera import Camera
from .canvas import Canvas
from .layout import Street, sample_street
from .style import DomainStyle
from .textures import SceneTextures, scene_textures


@dataclass
class SceneContext:
    """One scene being rendered: its random stream, style, camera, street
    layout and textures (all drawn up front), and the canvas.

    Every painter draws from ``rng`` in turn, so the order of the painting
    calls (``scene.py``) is part of the output for a given seed.
    """
    rng: object   # numpy.random.Generator
    style: DomainStyle
    camera: Camera
    street: Street
    textures: SceneTextures
    canvas: Canvas

    @classmethod
    def sample(cls, rng, style: DomainStyle, width: int,
               height: int) -> 'SceneContext':
        """Draw the camera, then the street, then the textures."""
        camera = Camera.sample(rng, width, height)
        street = sample_street(rng, style)
        textures = scene_textures(rng, style)
        return cls(rng, style, camera, street, textures,
                   Canvas(width, height))
