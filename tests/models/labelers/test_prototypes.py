"""Class prototypes (spherical k-means per class) and the prior cost."""
import torch
import torch.nn.functional as F

from mmseg_saot.models.labelers import ClassPrototypes, spherical_kmeans


def clustered(num_classes=3, per_class=40, dim=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(num_classes, dim, generator=gen), dim=1)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    feats = centres[labels] + 0.1 * torch.randn(labels.numel(), dim, generator=gen)
    return feats, labels, centres


def test_prototypes_lie_near_their_class():
    feats, labels, centres = clustered()
    protos = ClassPrototypes(num_classes=4, dim=16, num_per_class=2).fit(feats, labels)
    for c in range(3):
        sims = protos.prototypes[c][protos.valid[c]] @ centres.t()
        assert (sims.argmax(1) == c).all()
        assert sims[:, c].min() > 0.8
    assert not protos.valid[3].any()  # class 3 has no source features
    cost = protos.class_cost(feats)
    torch.testing.assert_close(cost[3], torch.full((feats.shape[0],), 2.0))
    assert (protos.classify(feats) == labels).all()


def test_kmeans_is_deterministic_and_finds_modes():
    a, _, _ = clustered(num_classes=2, seed=1)
    first = spherical_kmeans(a, 2, seed=5)
    torch.testing.assert_close(spherical_kmeans(a, 2, seed=5), first)
    assert first.shape == (2, 16)
    assert float(first[0] @ first[1]) < 0.9  # two distinct modes, not one twice
