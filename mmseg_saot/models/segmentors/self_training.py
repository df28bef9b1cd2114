"""Pieces of EMA-teacher self-training on tensors: teacher labels, mixed strong views.

Stateless functions; randomness only through an explicit ``torch.Generator``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_saot.models.decode_heads.mlp_head import PIXEL_WEIGHT_KEY
from .augmentations import class_mix_masks, color_jitter, gaussian_blur, mix


def valid_pixels(samples: Sequence[SegDataSample], size: Tuple[int, int],
                 device: torch.device) -> torch.Tensor:
    """``(B, H, W)`` bool: pixels inside each image, outside the preprocessor's padding."""
    mask = torch.zeros(len(samples), *size, dtype=torch.bool, device=device)
    for i, sample in enumerate(samples):
        height, width = sample.metainfo.get('img_shape', size)
        mask[i, :height, :width] = True
    return mask


def teacher_labels(logits: torch.Tensor, valid: torch.Tensor, *, threshold: float,
                   ignore_index: int = 255) -> Tuple[torch.Tensor, torch.Tensor]:
    """Hard labels and per-pixel weights from the teacher's logits.

    The weight of a pixel is the teacher's confidence p = max softmax probability
    when p >= ``threshold``, else 0; padding gets label ``ignore_index``.

    Args:
        logits: ``(B, C, H, W)`` teacher logits at image resolution.
        valid: ``(B, H, W)`` bool, pixels inside the images.

    Returns:
        labels ``(B, H, W)`` long and weights ``(B, H, W)`` float in [0, 1].
    """
    confidence, labels = logits.float().softmax(dim=1).max(dim=1)
    weights = torch.where(confidence >= threshold, confidence, torch.zeros_like(confidence))
    weights = weights * valid
    labels = labels.masked_fill(~valid, ignore_index)
    return labels, weights


def pad_to(tensor: torch.Tensor, size: Tuple[int, int], value: float) -> torch.Tensor:
    """Pad the last two dims on the bottom/right to ``size`` (as the preprocessor pads)."""
    pad_h, pad_w = size[0] - tensor.shape[-2], size[1] - tensor.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return tensor
    return F.pad(tensor, (0, pad_w, 0, pad_h), value=value)


def stack_labels(samples: Sequence[SegDataSample], size: Tuple[int, int],
                 ignore_index: int = 255) -> torch.Tensor:
    """``(B, H, W)`` long ground truth of labelled samples, padded with ignore."""
    return torch.stack([pad_to(sample.gt_sem_seg.data[0].long(), size, ignore_index)
                        for sample in samples])


def strong_view(source: torch.Tensor, source_labels: torch.Tensor, target: torch.Tensor,
                target_labels: torch.Tensor, target_weights: torch.Tensor, *,
                mean: Sequence[float], std: Sequence[float], generator: torch.Generator,
                class_mix: bool = True, jitter_strength: float = 0.2,
                jitter_probability: float = 0.8, blur_probability: float = 0.5,
                ignore_index: int = 255, valid: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's strong view: ClassMix of source into target, then colour and blur.

    With ``class_mix`` the pixels of half of each source image's classes are pasted
    onto the paired target image (DACS / DAFormer); pasted pixels carry their true
    source label at weight 1, the others the teacher's label and weight. Colour
    jitter and blur change appearance only, so the labels stay aligned.

    Args:
        source, target: ``(B, 3, H, W)`` normalised images of one size.
        source_labels: ``(B, H, W)`` source ground truth.
        target_labels, target_weights: ``(B, H, W)`` teacher labels and weights.
        valid: optional ``(B, H, W)`` mask of the target's image pixels (the rest pads
            it); with the pasted source pixels, what colour jitter and blur read, so
            that padding does not bleed into the image's edges.

    Returns:
        images ``(B, 3, H, W)``, labels ``(B, H, W)`` and weights ``(B, H, W)``.
    """
    images, labels, weights = target, target_labels, target_weights
    if class_mix:
        masks = class_mix_masks(source_labels, generator=generator, ignore_index=ignore_index)
        images = mix(masks, source, target)
        labels = mix(masks, source_labels, target_labels)
        weights = mix(masks, torch.ones_like(target_weights), target_weights)
        if valid is not None:  # pasted pixels are source image pixels (labelled ones)
            valid = valid.bool() | masks.bool()
    images = color_jitter(images, mean, std, generator=generator, strength=jitter_strength,
                          probability=jitter_probability, valid=valid)
    images = gaussian_blur(images, generator=generator, probability=blur_probability,
                           valid=valid)
    return images, labels, weights


def image_masks(samples: Sequence[SegDataSample], size: Tuple[int, int],
                device: torch.device) -> torch.Tensor:
    """``(B, H, W)`` bool masks of the image pixels of a padded batch: the top-left
    ``img_shape`` of each sample (the preprocessor pads on the right and bottom)."""
    masks = torch.zeros((len(samples), *size), dtype=torch.bool, device=device)
    for mask, sample in zip(masks, samples):
        height, width = sample.metainfo.get('img_shape', size)[:2]
        mask[:height, :width] = True
    return masks


def labelled_samples(templates: Sequence[SegDataSample], labels: torch.Tensor,
                     weights: torch.Tensor) -> List[SegDataSample]:
    """Data samples with the given labels and ``gt_pixel_weight`` (metainfo copied)."""
    samples = []
    for template, label, weight in zip(templates, labels, weights):
        sample = SegDataSample(metainfo=template.metainfo)
        sample.gt_sem_seg = PixelData(data=label[None])
        sample.set_data({PIXEL_WEIGHT_KEY: PixelData(data=weight[None].float())})
        samples.append(sample)
    return samples
