from .dinov2 import DINOv2Backbone

__all__ = ['DINOv2Backbone']
