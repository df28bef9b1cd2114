from .pixel_weights import LoadPixelWeights, PackSegInputsWithWeights

__all__ = ['LoadPixelWeights', 'PackSegInputsWithWeights']
