import pytest
import torch
from mmengine.config import Config

from mmseg_saot.utils.imagenet import IMAGENET_MEAN, IMAGENET_STD, normalize_images


def test_normalize_images_per_channel():
    images = torch.stack([torch.full((2, 3), v) for v in IMAGENET_MEAN])[None]
    images = torch.cat([images, images + torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)])
    out = normalize_images(images)
    assert torch.allclose(out[0], torch.zeros(3, 2, 3), atol=1e-6)
    assert torch.allclose(out[1], torch.ones(3, 2, 3), atol=1e-6)


def test_normalize_images_rejects_non_rgb_batches():
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\).*\(3, 4, 4\)'):
        normalize_images(torch.zeros(3, 4, 4))


def test_configs_use_the_same_statistics():
    cfg = Config.fromfile('configs/_base_/models/dinov2_mlp.py')
    assert tuple(cfg.data_preprocessor.mean) == IMAGENET_MEAN
    assert tuple(cfg.data_preprocessor.std) == IMAGENET_STD
