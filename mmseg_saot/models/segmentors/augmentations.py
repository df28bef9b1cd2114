"""Stateless batch augmentations of self-training (weak/strong views, ClassMix).

Every function takes its randomness from an explicit ``torch.Generator`` and returns
new tensors: the same generator state gives the same result, so a student's strong
view and the teacher's pseudo-label stay reproducible. Images are ``(B, 3, H, W)``
float tensors normalised by the data preprocessor (``(x - mean) / std``).
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def color_jitter(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *,
                 generator: torch.Generator, strength: float = 0.2,
                 probability: float = 0.8,
                 valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Random brightness, contrast and saturation per image (in pixel space).

    Args:
        images: ``(B, 3, H, W)`` normalised images.
        mean, std: the preprocessor's per-channel statistics (pixel units).
        strength: each factor is drawn from ``[1 - strength, 1 + strength]``; at most 1
            (a negative factor would invert the image).
        probability: chance that an image is jittered at all.
        valid: optional ``(B, H, W)`` mask of image pixels (the rest pads the batch):
            the contrast's mean is theirs, and padding keeps its value.

    Returns:
        ``(B, 3, H, W)`` normalised images; pixel values stay in [0, 255].
    """
    mean_t = images.new_tensor(mean)[None, :, None, None]
    std_t = images.new_tensor(std)[None, :, None, None]
    pixels = images * std_t + mean_t
    batch = images.shape[0]

    def factors():
        return (1 + strength * (2 * torch.rand(batch, generator=generator) - 1)).to(images)

    apply = (torch.rand(batch, generator=generator) < probability).to(images)[:, None, None, None]
    bright, contrast, saturation = factors(), factors(), factors()
    out = pixels * bright[:, None, None, None]
    padded = valid is not None and not bool(valid.all())
    if padded:  # the mean of the image pixels, not of the padding
        v = valid[:, None].to(out)
        gray_mean = (out * v).sum((1, 2, 3), keepdim=True) / (
            3 * v.sum((1, 2, 3), keepdim=True)).clamp(min=1)
    else:
        gray_mean = out.mean((1, 2, 3), keepdim=True)
    out = (out - gray_mean) * contrast[:, None, None, None] + gray_mean
    gray = out.mean(1, keepdim=True)
    out = (out - gray) * saturation[:, None, None, None] + gray
    out = out.clamp(0, 255)
    result = (apply * out + (1 - apply) * pixels - mean_t) / std_t
    return torch.where(v.bool(), result, images) if padded else result


def gaussian_blur(images: torch.Tensor, *, generator: torch.Generator,
                  sigma_range: Tuple[float, float] = (0.15, 1.15),
                  probability: float = 0.5,
                  valid: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Blur each image, with probability ``probability``, by a random-sigma Gaussian.

    ``valid``: optional ``(B, H, W)`` mask of image pixels; where an image is padded, its
    pixels are blurred over image pixels only (the kernel renormalised where it reaches
    padding) and the padding keeps its value.
    """
    out = images.clone()
    draws = torch.rand(images.shape[0], generator=generator)
    sigmas = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * torch.rand(
        images.shape[0], generator=generator)
    for i in torch.nonzero(draws < probability).flatten().tolist():
        sigma = float(sigmas[i])
        radius = max(1, int(round(3 * sigma)))
        x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
        kernel = kernel / kernel.sum()
        img = images[i:i + 1].transpose(0, 1)  # (3, 1, H, W): one channel per batch item
        if valid is None or bool(valid[i].all()):
            out[i] = _separable(img, kernel, radius).transpose(0, 1)[0]
            continue
        mask = valid[i][None, None].to(img)  # (1, 1, H, W)
        blurred = _separable(img * mask, kernel, radius) / _separable(
            mask, kernel, radius).clamp_min(1e-6)
        out[i] = torch.where(mask.bool(), blurred, img).transpose(0, 1)[0]
    return out


def _separable(img: torch.Tensor, kernel: torch.Tensor, radius: int) -> torch.Tensor:
    """``(C, 1, H, W)`` convolved with ``kernel`` along W then H, reflecting at the edges."""
    img = F.conv2d(F.pad(img, (radius, radius, 0, 0), mode='reflect'), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(img, (0, 0, radius, radius), mode='reflect'), kernel.view(1, 1, -1, 1))


def class_mix_masks(labels: torch.Tensor, *, generator: torch.Generator,
                    ignore_index: int = 255) -> torch.Tensor:
    """ClassMix masks: per image, the pixels of a random half of its classes.

    Args:
        labels: ``(B, H, W)`` integer labels of the images pasted *from*.

    Returns:
        ``(B, H, W)`` float masks in {0, 1} (1 = take the pixel from the source image).
    """
    masks = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)
    for i in range(labels.shape[0]):
        classes = torch.unique(labels[i])
        classes = classes[classes != ignore_index]
        if classes.numel() == 0:
            continue
        order = torch.randperm(classes.numel(), generator=generator)
        chosen = classes[order[:(classes.numel() + 1) // 2].to(classes.device)]
        masks[i] = torch.isin(labels[i], chosen).float()
    return masks


def mix(mask: torch.Tensor, pasted: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``mask * pasted + (1 - mask) * base`` for images ``(B, C, H, W)`` or maps ``(B, H, W)``.

    Integer maps (labels) stay integer.
    """
    m = mask if pasted.dim() == mask.dim() else mask[:, None]
    if not pasted.dtype.is_floating_point:
        return torch.where(m.bool(), pasted, base)
    return m * pasted + (1 - m) * base
