"""Side-by-side PNGs for eyeballing pseudo-labels: image | label | confidence | truth."""
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageOps


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]],
             ignore_index: int = 255) -> np.ndarray:
    """``(H, W)`` train ids -> ``(H, W, 3)`` uint8 colours; ignore is black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:len(palette)] = np.asarray(palette, dtype=np.uint8)
    table[ignore_index] = 0
    return table[labels]


def overlay_panel(image: np.ndarray, labels: np.ndarray, confidence: np.ndarray,
                  gt: Optional[np.ndarray], palette: Sequence[Sequence[int]],
                  ignore_index: int = 255, gap: int = 4) -> np.ndarray:
    """One row of panels, each ``(H, W, 3)``: the RGB image, the pseudo-label blended
    over it, the confidence as grey levels, and the ground truth (if any).

    Args:
        image: ``(H, W, 3)`` uint8 RGB. labels: ``(H, W)`` uint8 train ids.
        confidence: ``(H, W)`` uint8. gt: ``(H, W)`` uint8 or None.
    """
    coloured = colorize(labels, palette, ignore_index)
    blend = np.where((labels == ignore_index)[..., None], image // 3,
                     (0.4 * image + 0.6 * coloured).astype(np.uint8))
    panels = [image, blend, np.repeat(confidence[..., None], 3, axis=2)]
    if gt is not None:
        panels.append(colorize(gt, palette, ignore_index))
    spacer = np.full((image.shape[0], gap, 3), 255, dtype=np.uint8)
    row = [panels[0]]
    for panel in panels[1:]:
        row += [spacer, panel]
    return np.concatenate(row, axis=1)


def save_overlay(path: str, image_path: str, labels: np.ndarray, confidence: np.ndarray,
                 gt: Optional[np.ndarray], palette: Sequence[Sequence[int]],
                 ignore_index: int = 255) -> None:
    """Write :func:`overlay_panel` of the image file at ``image_path`` to ``path``; the
    image is turned by its EXIF orientation, as MMSeg's loading (OpenCV) turns it."""
    with Image.open(image_path) as opened:
        image = np.asarray(ImageOps.exif_transpose(opened).convert('RGB'))
    if image.shape[:2] != labels.shape:
        image = np.asarray(Image.fromarray(image).resize(labels.shape[::-1], Image.BILINEAR))
    Image.fromarray(overlay_panel(image, labels, confidence, gt, palette,
                                  ignore_index)).save(path)
