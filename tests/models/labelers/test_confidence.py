"""Confidence filtering of pseudo-labels."""
import pytest
import torch

from mmseg_saot.models.labelers import filter_confidence


def test_threshold_sets_ignore_and_survives_nan():
    labels = torch.tensor([0, 1, 1, 2, 255])
    conf = torch.tensor([0.9, 0.2, float('nan'), 0.6, 0.99])
    out = filter_confidence(labels, conf, mode='threshold', threshold=0.5, num_classes=3)
    assert out.tolist() == [0, 255, 255, 2, 255]


def test_quantile_is_per_class():
    labels = torch.tensor([0] * 10 + [1] * 10)
    conf = torch.cat([torch.linspace(0.9, 1.0, 10), torch.linspace(0.1, 0.2, 10)])
    out = filter_confidence(labels, conf, mode='quantile', quantile=0.3, num_classes=2)
    # each class loses its own lowest 30 %, the low-confidence class is not wiped out
    assert int((out == 0).sum()) == 7 and int((out == 1).sum()) == 7
    assert out[:3].eq(255).all() and out[10:13].eq(255).all()


def test_bad_mode_raises():
    with pytest.raises(ValueError, match='mode'):
        filter_confidence(torch.zeros(2, dtype=torch.long), torch.ones(2), mode='top')
