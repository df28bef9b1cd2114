"""Label transfer through plans, and the NN / kNN baselines."""
import pytest
import torch
import torch.nn.functional as F

from mmseg_saot.ot import (cosine_cost, knn_transfer, nn_transfer, sinkhorn, sinkhorn_online,
                           transfer_labels)
from mmseg_saot.ot.synthetic import ClusteredFeatures


def _planted(n_src=240, n_tgt=90, classes=4, seed=0):
    geometry = ClusteredFeatures(32, num_classes=classes, subclusters=1, class_spread=0.0,
                                 noise=0.3, seed=seed, frequencies=[1] * classes)
    xs, ls = geometry.sample(n_src, seed=1)
    xt, lt = geometry.sample(n_tgt, seed=2)
    return xs, ls, xt, lt


def test_planted_clusters_transfer_perfectly():
    xs, ls, xt, lt = _planted()
    res = sinkhorn(cosine_cost(xs, xt), epsilon=0.05, rho=1.0)
    out = transfer_labels(res, ls, 4)
    assert (out.labels == lt).all()
    assert (out.confidence > 0.99).all()
    assert torch.allclose(out.probs.sum(1), torch.ones(90))
    assert (nn_transfer(xs, ls, xt).labels == lt).all()
    assert (knn_transfer(xs, ls, xt, 4).labels == lt).all()


def test_ignored_sources_do_not_vote():
    xs, ls, xt, lt = _planted()
    # Relabel class-0 sources as ignored: class 0 disappears from every prediction,
    # although those sources are the nearest and carry the transport mass.
    ignored = torch.where(ls == 0, torch.full_like(ls, 255), ls)
    res = sinkhorn(cosine_cost(xs, xt), epsilon=0.05, rho=1.0)
    out = transfer_labels(res, ignored, 4)
    for pred in (out.labels, nn_transfer(xs, ignored, xt).labels,
                 knn_transfer(xs, ignored, xt, 4).labels):
        assert not (pred == 0).any()
        assert (pred[lt != 0] == lt[lt != 0]).all()
    assert (out.probs[:, 0] == 0).all()
    # mass counts labelled sources only: targets of class 0 receive almost none
    assert float(out.mass[lt == 0].max()) < 0.01 * float(out.mass[lt != 0].min())


def test_no_labelled_mass_gives_ignore():
    plan = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    out = transfer_labels(plan, torch.tensor([1, 255]), 3)
    assert out.labels.tolist() == [1, 255]
    assert out.probs[1].sum() == 0 and out.confidence[1] == 0


def test_a_plan_without_sources_gives_ignore_everywhere():
    # N = 0 failed with "range() arg 3 must not be zero"; (N, 0) already worked
    out = transfer_labels(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long), 3)
    assert out.labels.tolist() == [255] * 5
    assert out.probs.shape == (5, 3) and out.mass.tolist() == [0.0] * 5


def test_a_half_precision_plan_is_cast_by_row_blocks(monkeypatch):
    # the default took the whole plan as one block: an fp16 plan was copied to fp32 whole
    from mmseg_saot.ot import labels
    cast_rows = []
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        if self.dtype == torch.float16 and self.dim() == 2:
            cast_rows.append(self.shape[0])
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, 'to', to)
    monkeypatch.setattr(labels, 'rows_per_block', lambda num_cols: 16)
    plan = torch.rand(100, 8).half()
    source_labels = torch.randint(0, 3, (100,), generator=torch.Generator().manual_seed(0))
    out = transfer_labels(plan, source_labels, 3)
    assert cast_rows == [16] * 6 + [4]
    monkeypatch.undo()
    torch.testing.assert_close(out.probs, transfer_labels(plan.float(), source_labels, 3).probs)


@pytest.mark.parametrize('chunk', [1, 7, 1000])
def test_chunked_equals_unchunked(chunk):
    gen = torch.Generator().manual_seed(3)
    xs, xt = torch.randn(130, 16, generator=gen), torch.randn(50, 16, generator=gen)
    ls = torch.randint(0, 5, (130,), generator=gen)
    ls[::9] = 255
    nn_full, nn_chunk = nn_transfer(xs, ls, xt), nn_transfer(xs, ls, xt, chunk_size=chunk)
    assert torch.equal(nn_full.labels, nn_chunk.labels)
    assert torch.equal(nn_full.index, nn_chunk.index)
    knn_full = knn_transfer(xs, ls, xt, 5, k=10)
    knn_chunk = knn_transfer(xs, ls, xt, 5, k=10, chunk_size=chunk)
    # fp32 similarities from different block shapes round differently (~1e-7), / T = 0.02
    torch.testing.assert_close(knn_chunk.probs, knn_full.probs, atol=2e-5, rtol=0)
    res = sinkhorn(cosine_cost(xs, xt), epsilon=0.1, rho=1.0)
    full = transfer_labels(res.plan, ls, 5)
    torch.testing.assert_close(transfer_labels(res, ls, 5, chunk_size=chunk).probs, full.probs,
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(transfer_labels(res.plan, ls, 5, chunk_size=chunk).probs,
                               full.probs, atol=1e-6, rtol=0)


def test_nn_matches_brute_force_and_knn_is_softmax_over_k():
    gen = torch.Generator().manual_seed(4)
    xs, xt = torch.randn(60, 8, generator=gen), torch.randn(20, 8, generator=gen)
    ls = torch.randint(0, 3, (60,), generator=gen)
    sim = F.normalize(xt, dim=1) @ F.normalize(xs, dim=1).t()
    assert torch.equal(nn_transfer(xs, ls, xt).index, sim.argmax(1))
    k, temp = 5, 0.1
    val, idx = sim.topk(k, dim=1)
    expected = torch.zeros(20, 3).scatter_add_(1, ls[idx], torch.softmax(val / temp, dim=1))
    torch.testing.assert_close(knn_transfer(xs, ls, xt, 3, k=k, temperature=temp).probs, expected)


def test_label_transfer_from_online_result():
    xs, ls, xt, lt = _planted(seed=5)
    out = transfer_labels(sinkhorn_online(xs, xt, epsilon=0.05, rho=1.0, chunk_size=50), ls, 4)
    assert (out.labels == lt).all()


def test_cross_entropy_on_transferred_labels_trains_the_metric():
    xs, ls, xt, lt = _planted(seed=6)
    proj = torch.eye(32, requires_grad=True)
    res = sinkhorn(cosine_cost(xs @ proj, xt @ proj), epsilon=0.1, rho=1.0, tol=1e-9)
    out = transfer_labels(res, ls, 4)
    loss = F.nll_loss(torch.log(out.probs + 1e-9), lt)
    loss.backward()
    assert proj.grad is not None and float(proj.grad.abs().sum()) > 0


def test_label_errors():
    with pytest.raises(ValueError, match=r'source_labels.*N = 3'):
        transfer_labels(torch.rand(3, 2), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match=r'\[0, 2\)'):
        transfer_labels(torch.rand(2, 2), torch.tensor([0, 5]), 2)


def test_baselines_reject_bad_arguments_by_name():
    x, labels = torch.randn(10, 4), torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match='`source_feats` and `target_feats` must share'):
        nn_transfer(x, labels, torch.randn(6, 5))
    with pytest.raises(ValueError, match='`source_feats` and `target_feats` must share'):
        knn_transfer(x, labels, torch.randn(6, 5), 3)
    with pytest.raises(ValueError, match='`chunk_size` must be an integer >= 1, got 0'):
        nn_transfer(x, labels, x, chunk_size=0)
    with pytest.raises(ValueError, match='`k` must be an integer >= 1, got -3'):
        knn_transfer(x, labels, x, 3, k=-3)


def test_nn_transfer_without_labelled_sources_returns_sentinels():
    x = torch.randn(10, 4)
    out = nn_transfer(x, torch.full((10,), 255), x[:3])
    assert (out.labels == 255).all()
    assert (out.index == -1).all()
    assert torch.isinf(out.similarity).all()


def test_transfer_labels_rejects_negative_or_integer_plans():
    labels = torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match='`plan` must be non-negative'):
        transfer_labels(torch.rand(10, 6) - 0.5, labels, 3)
    with pytest.raises(ValueError, match='`plan` must be a floating point tensor'):
        transfer_labels(torch.ones(10, 6, dtype=torch.long), labels, 3)


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_transfer_labels_rejects_a_plan_that_is_not_finite(bad):
    # a NaN entry gave NaN probabilities and confidence for its target, silently
    plan = torch.rand(10, 6)
    plan[3, 2] = bad
    with pytest.raises(ValueError, match=r'`plan` has non-finite entries \(NaN or inf\)'):
        transfer_labels(plan, torch.randint(0, 3, (10,)), 3)


@pytest.mark.parametrize('baseline', ['nn', 'knn'])
def test_baselines_reject_float_labels_as_transfer_labels_does(baseline):
    # float labels came back as float labels (nn) or were cast silently (knn)
    x = torch.randn(10, 4)
    labels = torch.randint(0, 3, (10,)).float()
    with pytest.raises(TypeError, match='`source_labels` must be an integer tensor'):
        if baseline == 'nn':
            nn_transfer(x, labels, x[:4])
        else:
            knn_transfer(x, labels, x[:4], 3)
