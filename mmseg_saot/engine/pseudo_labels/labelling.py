"""Fit a SAOT labeller on source features and turn target features into label maps.

Shared by :class:`~mmseg_saot.engine.hooks.SAOTPseudoLabelHook` and
``tools/generate_pseudo_labels.py``: both call :func:`fit_labeler` and
:func:`label_image`, so the offline tool and the training hook give the same labels.
"""
from dataclasses import dataclass
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmseg.registry import MODELS

from mmseg_saot.models.labelers import SAOTLabeler
from .features import ImageFeatures, PseudoLabelInputError, stack_same_grid


def build_labeler(labeler_cfg: dict, *, feat_dim: int, num_classes: int,
                  ignore_index: int, method: Optional[str] = None) -> SAOTLabeler:
    """Build the labeller of ``labeler_cfg`` for features of width ``feat_dim``.

    ``method`` overrides the config's method (the ablation ladder of the CLI). A config
    without ``type`` is an :class:`SAOTLabeler` (a ``custom_hooks`` list written anew
    easily drops the base file's ``type``).
    """
    cfg = dict(labeler_cfg)
    cfg.setdefault('type', 'SAOTLabeler')
    cfg.update(feat_dim=feat_dim, num_classes=num_classes, ignore_index=ignore_index)
    if method is not None:
        cfg['method'] = method
    return MODELS.build(cfg)


def usable_sources(records: List[ImageFeatures], ignore_index: int) -> List[ImageFeatures]:
    """Drop source images without one labelled patch (they cannot vote).

    Raises:
        PseudoLabelInputError: no source image has a labelled patch.
    """
    kept = [r for r in records if bool((r.labels != ignore_index).any())]
    if not kept:
        raise PseudoLabelInputError(
            f'all {len(records)} source label maps are entirely ignore ({ignore_index}) at '
            'patch level: there is nothing to transfer. Check the source seg_map_path and '
            'seg_map_suffix, and that the labels are train ids.')
    return kept


def fit_labeler(labeler: SAOTLabeler, sources: List[ImageFeatures],
                target_sample: List[ImageFeatures],
                state: Optional[dict] = None) -> SAOTLabeler:
    """Fit ``labeler`` on source features; fix the target mean from ``target_sample``.

    Args:
        labeler: a fresh :class:`SAOTLabeler`.
        sources: source images with patch labels, all on one patch grid.
        target_sample: target images whose mean feature centres every target.
        state: a saved ``labeler.state_dict()``: loaded instead of training the
            metric (prototypes are rebuilt from it, deterministically).
    """
    if state is None and labeler.trains_metric and len(sources) < 2:
        raise PseudoLabelInputError(
            f'the learned metric trains on pairs of labelled source images, and the source '
            f'set has {len(sources)} with a labelled patch; give SAOTPseudoLabelHook more '
            'source images (its num_source_images, or the images and labels of its '
            "source dataset), or label without the metric (method='ot_unbalanced', 'knn' "
            "or 'nn').")
    feats, labels = stack_same_grid(sources, 'the source pipeline')
    if state is not None:
        labeler.load_state_dict(state)
        labeler.fit(feats, labels, train=False)
        return labeler
    labeler.fit(feats, labels)
    sample = torch.cat([r.feats.flatten(1) for r in target_sample], 1)  # (D, sum hw)
    return labeler.fit_target(sample[None, :, :, None])


@dataclass
class ImageLabels:
    """Pseudo-labels of one image at its file's resolution.

    Attributes:
        labels: ``(H, W)`` uint8 train ids after the confidence filter (255 ignore).
        raw_labels: ``(H, W)`` uint8 before the filter (255 only where no mass).
        confidence: ``(H, W)`` uint8, ``round(255 * confidence)``.
        all_ignore: every pixel of ``labels`` is ignore.
    """

    labels: np.ndarray
    raw_labels: np.ndarray
    confidence: np.ndarray
    all_ignore: bool


def to_file_size(maps: torch.Tensor, record: ImageFeatures) -> torch.Tensor:
    """Pixel maps over an image's padded patch grid, cropped to the resized image and
    resized (nearest, pixel centres aligned as the image's resize aligns them) to the
    file's size: ``(K, h p, w p)`` -> ``(K, H, W)`` float. Plain ``'nearest'`` reads
    source pixel ``floor(i * in / out)``, which put label edges about half a file pixel
    down and right of the image content at 518 -> 1024."""
    crop_h, crop_w = record.img_shape
    return F.interpolate(maps[None, :, :crop_h, :crop_w].float(), size=record.ori_shape,
                         mode='nearest-exact')[0]


def label_image(labeler: SAOTLabeler, record: ImageFeatures, patch: int) -> ImageLabels:
    """Pseudo-label one target image at its file's resolution.

    The patch probabilities are upsampled over the padded grid (``h p x w p``), cropped
    to the resized image and resized to the file's size (nearest). The confidence
    filter ranks the pixels of the resized image only, not those of the padding.
    """
    height, width = record.feats.shape[-2:]
    out = labeler(record.feats[None], out_size=(height * patch, width * patch),
                  valid_size=tuple(record.img_shape))
    maps = to_file_size(torch.stack([out.labels[0], out.raw_labels[0], out.confidence[0]]),
                        record)
    labels, raw = (m.round().to(torch.uint8).cpu().numpy() for m in maps[:2])
    confidence = (maps[2].nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageLabels(labels=labels, raw_labels=raw, confidence=confidence.cpu().numpy(),
                       all_ignore=bool(out.all_ignore[0]))
