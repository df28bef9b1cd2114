"""The patch oracle: the ground truth's own patch labels, brought back to pixels.

Every labeller of the ladder decides one label distribution per backbone patch and
upsamples it to pixels. Giving each patch its true majority class instead, upsampled
the same way, scores what perfect patch-level transfer would reach at the labelling
resolution: the ceiling of every method, and the share of the gap to it that a method
closes (thin classes such as poles and signs vanish at 14-pixel patches already here).
"""
import numpy as np
import torch
import torch.nn.functional as F

from mmseg_saot.models.labelers.patch_labels import patch_labels, patch_probs_to_pixels
from .features import ImageFeatures
from .labelling import to_file_size

PATCH_ORACLE = 'patch_oracle'


def patch_oracle_labels(gt: np.ndarray, record: ImageFeatures, patch: int, *,
                        num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Labels of one image from its ground truth's patch majorities, as a labeller's are.

    The ground truth is resized (nearest) to the resized image the features were computed
    on, reduced to the majority class of each patch's labelled pixels
    (:func:`patch_labels`; a patch with none has no mass), made one-hot,
    upsampled with :func:`patch_probs_to_pixels` over the padded grid and brought to the
    file's size by :func:`~.labelling.to_file_size`, as the labellers' outputs are.

    Args:
        gt: ``(H, W)`` ground-truth train ids at the file's size.
        record: the image's features (its grid, resized and original shapes).
        patch: the backbone's patch size.
        num_classes, ignore_index: the label space.

    Returns:
        ``(H, W)`` uint8 labels, ``ignore_index`` where patches had no labelled majority.

    Raises:
        ValueError: a ground-truth value outside ``[0, num_classes)`` and not ignore.
    """
    grid_h, grid_w = record.feats.shape[-2:]
    truth = torch.from_numpy(gt.astype(np.int64))[None, None].float()
    truth = F.interpolate(truth, size=tuple(record.img_shape), mode='nearest-exact')[0].long()
    # any labelled pixel decides a patch (padding and ignore pixels are never scored)
    cells = patch_labels(truth, patch=patch, num_classes=num_classes,
                         ignore_index=ignore_index, min_valid=1e-6)[0, :grid_h, :grid_w]
    labelled = cells != ignore_index
    probs = F.one_hot(torch.where(labelled, cells, 0), num_classes).float()
    probs = (probs * labelled[..., None]).permute(2, 0, 1)[None]
    labels, _ = patch_probs_to_pixels(probs, (grid_h * patch, grid_w * patch), ignore_index)
    return to_file_size(labels[None], record)[0].to(torch.uint8).numpy()
