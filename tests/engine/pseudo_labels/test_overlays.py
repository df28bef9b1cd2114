"""Overlay PNGs: the image panel is the image as the dataset reads it."""
import numpy as np
from PIL import Image, ImageOps

from mmseg_saot.engine.pseudo_labels.overlays import save_overlay


def test_an_exif_rotated_photo_is_shown_turned_as_the_labels_are(tmp_path):
    # the labels follow MMSeg's loading, which applies the EXIF orientation; the overlay
    # showed the stored (unturned) image stretched to the labels' size
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :8] = 255  # a white band on the left of the stored image
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / 'photo.jpg'
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    labels = np.zeros((32, 16), np.uint8)  # the turned image's size
    out = tmp_path / 'overlay.png'
    save_overlay(str(out), str(path), labels, np.zeros_like(labels), None, [[0, 0, 0]])
    panel = np.asarray(Image.open(out))[:, :16]
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert('RGB'))
    assert panel.shape == expected.shape == (32, 16, 3)
    assert np.abs(panel.astype(int) - expected).max() <= 2
    assert panel[:8].mean() > 200 and panel[-8:].mean() < 50  # the band is now on top
