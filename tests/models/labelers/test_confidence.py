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


def _loop_reference(labels, conf, q, num_classes=19, ignore=255):
    """The per-class loop the vectorised filter replaces."""
    keep = labels != ignore
    cut = torch.zeros_like(conf)
    for c in range(num_classes):
        members = (labels == c) & keep
        if bool(members.any()):
            ordered = conf[members].sort().values
            cut[members] = ordered[min(int(q * ordered.numel()), ordered.numel() - 1)]
    return torch.where(keep & (conf >= cut), labels, torch.full_like(labels, ignore))


def test_vectorised_quantile_filter_equals_a_loop_over_classes_with_ties():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        shape = (int(torch.randint(1, 4, (1,), generator=gen)), 23, 17)
        labels = torch.randint(0, 19, shape, generator=gen)
        labels[torch.rand(shape, generator=gen) < 0.2] = 255
        conf = (torch.rand(shape, generator=gen) * 10).round() / 10  # many ties
        q = float(torch.rand(1, generator=gen))
        assert torch.equal(filter_confidence(labels, conf, quantile=q),
                           _loop_reference(labels, conf, q))
