"""ImageNet colour statistics, the input normalisation of DINOv2 and timm's ViTs.

The configs spell them out in ``data_preprocessor`` (``configs/_base_/models/dinov2_mlp.py``;
a test checks they agree); tools that feed a backbone without MMSeg's data pipeline use
:func:`normalize_images`.
"""
from typing import Tuple

import torch

IMAGENET_MEAN: Tuple[float, float, float] = (123.675, 116.28, 103.53)  # on 0-255 RGB
IMAGENET_STD: Tuple[float, float, float] = (58.395, 57.12, 57.375)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """Standardise RGB images with the ImageNet statistics.

    Args:
        images: ``(B, 3, H, W)`` RGB in 0-255, any float dtype and device.

    Returns:
        ``(B, 3, H, W)`` images minus the mean, over the standard deviation, per channel.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f'normalize_images expects (B, 3, H, W) RGB images, got shape '
                         f'{tuple(images.shape)}.')
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std
