"""LowRankMetric and its training by differentiable OT label transfer."""
import torch

from mmseg_saot.models.labelers import LowRankMetric, train_metric, transfer_loss
from mmseg_saot.ot import cosine_cost


def two_cluster_problem(num_images=6, patches=24, dim=8, seed=0):
    """Two classes separated along dim 0 only, swamped by strong noise on dims 1..D-1."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(2, (num_images, patches), generator=gen)
    feats = torch.randn(num_images, patches, dim, generator=gen) * 1.0
    feats[..., 0] = (labels.float() * 2 - 1) * 0.6 + 0.1 * torch.randn(
        num_images, patches, generator=gen)
    return feats, labels


def test_identity_init_reproduces_cosine_cost():
    metric = LowRankMetric(dim=16, rank=4)
    x, y = torch.randn(5, 16), torch.randn(7, 16)
    torch.testing.assert_close(metric(x), x)
    torch.testing.assert_close(metric.cost(x, y), cosine_cost(x, y))


def test_training_lowers_transfer_loss_and_is_deterministic():
    feats, labels = two_cluster_problem()
    kwargs = dict(steps=30, pairs_per_step=2, patches_per_image=16, lr=0.05, epsilon=0.05,
                  rho=(0.5, 1.0), seed=3)
    metric = LowRankMetric(dim=8, rank=2)
    probe = (feats[:3], labels[:3], feats[3:], labels[3:])
    with torch.no_grad():
        before = float(transfer_loss(metric, probe[0], probe[1], probe[2], probe[3], 2,
                                     epsilon=0.05, rho=(0.5, 1.0)))
    train_metric(metric, feats, labels, 2, **kwargs)
    with torch.no_grad():
        after = float(transfer_loss(metric, probe[0], probe[1], probe[2], probe[3], 2,
                                    epsilon=0.05, rho=(0.5, 1.0)))
    assert after < 0.8 * before, (before, after)
    again = LowRankMetric(dim=8, rank=2)
    train_metric(again, feats, labels, 2, **kwargs)
    torch.testing.assert_close(again.up, metric.up)


def test_state_dict_round_trip():
    feats, labels = two_cluster_problem()
    metric = LowRankMetric(dim=8, rank=2)
    train_metric(metric, feats, labels, 2, steps=3, pairs_per_step=1, patches_per_image=8)
    loaded = LowRankMetric(dim=8, rank=2, seed=1)
    loaded.load_state_dict(metric.state_dict())
    x = torch.randn(4, 8)
    torch.testing.assert_close(loaded(x), metric(x))
