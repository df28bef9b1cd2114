"""The patch oracle: true patch majorities, upsampled as the labellers' outputs are."""
import numpy as np
import pytest
import torch

from mmseg_saot.engine.pseudo_labels.features import ImageFeatures
from mmseg_saot.engine.pseudo_labels.oracle import patch_oracle_labels


def record_for(img_shape, ori_shape, patch=14):
    grid = (-(-img_shape[0] // patch), -(-img_shape[1] // patch))
    return ImageFeatures(index=0, img_path='x.png', feats=torch.zeros(8, *grid),
                         img_shape=img_shape, ori_shape=ori_shape)


def cell_map(cells: np.ndarray, patch: int = 14) -> np.ndarray:
    return np.kron(cells, np.ones((patch, patch), dtype=np.uint8)).astype(np.uint8)


def test_labels_constant_per_patch_are_reproduced_exactly():
    cells = np.array([[0, 1, 2, 3], [4, 5, 6, 7]], dtype=np.uint8)
    gt = cell_map(cells)
    labels = patch_oracle_labels(gt, record_for((28, 56), (28, 56)), 14, num_classes=19)
    assert labels.dtype == np.uint8 and np.array_equal(labels, gt)


def test_an_unlabelled_patch_is_ignore_where_it_outweighs_its_neighbours():
    cells = np.array([[0, 0, 0], [0, 255, 0], [0, 0, 0]], dtype=np.uint8)
    labels = patch_oracle_labels(cell_map(cells), record_for((42, 42), (42, 42)), 14,
                                 num_classes=19)
    assert (labels[19:23, 19:23] == 255).all()  # its centre, as a labeller leaves it
    assert (labels[:14] == 0).all()


def test_the_file_size_is_restored_when_features_came_from_a_resized_image():
    gt = cell_map(np.array([[0, 1], [2, 3]], dtype=np.uint8), patch=28)  # 56 x 56 file
    labels = patch_oracle_labels(gt, record_for((28, 28), (56, 56)), 14, num_classes=19)
    assert labels.shape == (56, 56) and np.array_equal(labels, gt)


def test_a_stripe_thinner_than_half_a_patch_vanishes():
    gt = np.zeros((28, 56), dtype=np.uint8)
    gt[:, 20:25] = 5  # a 5-pixel pole
    labels = patch_oracle_labels(gt, record_for((28, 56), (28, 56)), 14, num_classes=19)
    assert not (labels == 5).any() and (labels == 0).all()


def test_patches_partly_outside_the_image_keep_their_label():
    gt = np.full((20, 30), 3, dtype=np.uint8)  # 2 x 3 patches, the last ones mostly padding
    labels = patch_oracle_labels(gt, record_for((20, 30), (20, 30)), 14, num_classes=19)
    assert labels.shape == (20, 30) and (labels == 3).all()


def test_a_label_outside_the_classes_is_an_error():
    gt = np.full((14, 14), 40, dtype=np.uint8)
    with pytest.raises(ValueError, match='label value 40'):
        patch_oracle_labels(gt, record_for((14, 14), (14, 14)), 14, num_classes=19)
