"""SAOTLabeler: the method switches, unbalanced mass, pixels, failures, registry."""
import math

import pytest
import torch
import torch.nn.functional as F

from mmseg.registry import MODELS
from mmseg_saot.models.labelers import METHODS, SAOTLabeler
from mmseg_saot.models.labelers.confidence import filter_confidence
from mmseg_saot.ot import block_sparse_sinkhorn
from mmseg_saot.utils.errors import ConfigError

C, D = 3, 16


def scenes(num_images, classes, seed, h=4, w=8, noise=0.3):
    """Images whose patches are noisy copies of per-class centres."""
    gen = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(C, D, generator=torch.Generator().manual_seed(99)), dim=1)
    pick = torch.randint(len(classes), (num_images, h, w), generator=gen)
    labels = torch.tensor(classes)[pick]
    feats = centres[labels] + noise * torch.randn(num_images, h, w, D, generator=gen)
    return feats.permute(0, 3, 1, 2).contiguous(), labels


def small(method, **kwargs):
    kw = dict(num_classes=C, feat_dim=D, metric_steps=5, metric_pairs=1, metric_patches=16,
              metric_rank=2, num_prototypes=2, knn_k=5, num_neighbors=2,
              center_features=False)  # the scenes shift class proportions on purpose
    kw.update(kwargs)
    return SAOTLabeler(method=method, **kw)


@pytest.mark.parametrize('method', list(METHODS))
def test_every_method_labels_clean_scenes(method):
    src, src_lab = scenes(4, [0, 1, 2], seed=0, noise=0.2)
    tgt, tgt_lab = scenes(2, [0, 1, 2], seed=1, noise=0.2)
    out = small(method).fit(src, src_lab)(tgt, out_size=(8, 16))
    assert out.labels.shape == (2, 8, 16) and out.raw_labels.shape == (2, 8, 16)
    assert not torch.isnan(out.confidence).any()
    assert float((out.raw_labels[:, ::2, ::2] == tgt_lab).float().mean()) > 0.85  # chance: 1/3
    assert not out.all_ignore.any()


def test_absent_class_receives_little_mass_when_unbalanced():
    src, src_lab = scenes(1, [0, 1, 2], seed=2, noise=0.1)
    tgt, _ = scenes(1, [0, 1], seed=3, noise=0.1)  # class 2 absent from the target
    sent = {}
    for method, rho in (('ot_balanced', math.inf), ('ot_unbalanced', (0.05, math.inf))):
        labeler = small(method, rho=rho, epsilon=0.05).fit(src, src_lab)
        x = src.flatten(2).transpose(1, 2)[0]
        y = tgt.flatten(2).transpose(1, 2)[0]
        xs, yt = labeler.fused_features(x, src_lab.flatten(), y)
        from mmseg_saot.ot import sinkhorn
        plan = sinkhorn(labeler.fused_cost(xs, yt), epsilon=0.05, rho=labeler.rho).plan
        sent[method] = float(plan[src_lab.flatten() == 2].sum() / plan.sum())
    share = float((src_lab == 2).float().mean())
    assert sent['ot_balanced'] > 0.8 * share
    assert sent['ot_unbalanced'] < 0.25 * sent['ot_balanced']


def test_prior_adds_the_prototype_cost():
    src, src_lab = scenes(3, [0, 1, 2], seed=4)
    labeler = small('saot', alpha=1.0, beta=0.5).fit(src, src_lab)
    x = src.flatten(2).transpose(1, 2).reshape(-1, D)[:10]
    lab = src_lab.flatten()[:10]
    y = torch.randn(6, D)
    fused = labeler.fused_cost(*labeler.fused_features(x, lab, y))
    phi = F.normalize(labeler.metric(x), dim=1), F.normalize(labeler.metric(y), dim=1)
    expected = (1 - phi[0] @ phi[1].t()) + 0.5 * labeler.prototypes.class_cost(phi[1])[lab]
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)


def test_block_sparse_switch_agrees_with_dense():
    src, src_lab = scenes(4, [0, 1, 2], seed=5)
    tgt, _ = scenes(1, [0, 1, 2], seed=6)
    dense = small('saot', solver='dense').fit(src, src_lab)
    sparse = small('saot', solver='block_sparse', coverage=1.0).fit(src, src_lab)
    out_d, out_s = dense(tgt), sparse(tgt)
    torch.testing.assert_close(out_s.patch_probs, out_d.patch_probs, atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match='coverage'):
        small('saot', coverage=0.0)


@pytest.mark.parametrize('option, value, message', [
    ('epsilon', 0.0, 'epsilon must be a number > 0, got 0.0'),
    ('rho', -1.0, 'rho must be a number > 0, got -1.0'),
    ('rho', (1.0, 2.0, 3.0), r'rho must be a number or a pair \(rho_src, rho_tgt\)'),
    ('tol', 'small', "tol must be a number > 0, got 'small'"),
    ('num_neighbors', 0, 'num_neighbors must be an integer >= 1, got 0'),
    ('knn_k', 2.5, 'knn_k must be an integer >= 1, got 2.5'),
    ('confidence_quantile', 1.0, r'confidence_quantile must be a number >= 0 and < 1, got 1.0'),
    ('confidence_mode', 'top', "confidence_mode must be one of .*, got 'top'"),
    ('coverage', 'abc', r"coverage must be a number > 0 and <= 1, got 'abc'"),
    ('coverage', 1.5, r'coverage must be a number > 0 and <= 1, got 1.5'),
    # a TypeError from randn() once training began
    ('metric_rank', 2.5, 'metric_rank must be an integer >= 0, got 2.5'),
    ('metric_steps', 1.5, 'metric_steps must be an integer >= 0, got 1.5'),
])
def test_option_out_of_range_is_a_config_error(option, value, message):
    with pytest.raises(ConfigError, match=f'SAOTLabeler: {message}'):
        SAOTLabeler(**{option: value})
    SAOTLabeler(rho=math.inf)  # a hard marginal is a valid rho


def test_block_sparse_coverage_reaches_the_solver(monkeypatch):
    from mmseg_saot.models.labelers import saot_labeler as module
    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs)
        return block_sparse_sinkhorn(*args, **kwargs)

    monkeypatch.setattr(module, 'block_sparse_sinkhorn', recording)
    src, src_lab = scenes(4, [0, 1, 2], seed=5)
    tgt, _ = scenes(1, [0, 1, 2], seed=6)
    small('saot', solver='block_sparse', coverage=0.4).fit(src, src_lab)(tgt)
    assert seen and all(k['coverage'] == 0.4 and k.get('selection', 'coverage') == 'coverage'
                        for k in seen)


def test_all_ignore_source_raises():
    src, src_lab = scenes(2, [0, 1], seed=7)
    with pytest.raises(ValueError, match='every source label is ignore'):
        small('saot').fit(src, torch.full_like(src_lab, 255))


def test_all_ignore_output_is_reported():
    src, src_lab = scenes(2, [0, 1], seed=8)
    tgt, _ = scenes(1, [0, 1], seed=9)
    labeler = small('ot_unbalanced', confidence_mode='threshold',
                    confidence_threshold=1.5).fit(src, src_lab)
    with pytest.warns(UserWarning, match='no pseudo-label at all'):
        out = labeler(tgt)
    assert out.all_ignore.all() and out.labels.eq(255).all()


def test_patches_without_mass_become_ignore():
    labeler = small('nn')
    probs = torch.zeros(1, C, 2, 2)
    probs[0, 1, 0, 0] = 1.0  # only the top-left patch received mass
    labels, conf = labeler._to_pixels(probs, (4, 4))
    assert labels[0, 0] == 1 and labels[3, 3] == 255
    assert not torch.isnan(conf).any()


def test_the_confidence_filter_ranks_the_image_not_its_padding():
    # the feature grid covers the image padded to whole patches: the per-class quantile
    # must be that of the image's pixels, as if the padding had been cut off first
    src, src_lab = scenes(3, [0, 1, 2], seed=13)
    tgt, _ = scenes(1, [0, 1, 2], seed=14)
    labeler = small('saot', confidence_quantile=0.3).fit(src, src_lab)
    out = labeler(tgt, out_size=(8, 16), valid_size=(6, 11))
    image = (slice(None), slice(0, 6), slice(0, 11))
    expected = filter_confidence(out.raw_labels[image], out.confidence[image], quantile=0.3,
                                 num_classes=C)
    torch.testing.assert_close(out.labels[image], expected, rtol=0, atol=0)
    outside = torch.ones(8, 16, dtype=torch.bool)
    outside[:6, :11] = False
    assert out.labels[0][outside].eq(255).all()
    whole = labeler(tgt, out_size=(8, 16))  # default: every pixel is image
    assert whole.labels.ne(255).sum() > out.labels.ne(255).sum()



def test_a_batch_takes_one_valid_size_per_image():
    # images of different sizes padded to one batch: one valid_size for all of them
    # ranked and cut every image by the same region
    src, src_lab = scenes(3, [0, 1, 2], seed=13)
    tgt, _ = scenes(2, [0, 1, 2], seed=15)
    labeler = small('saot', confidence_quantile=0.3, center_features=False).fit(src, src_lab)
    sizes = [(6, 11), (8, 9)]
    batched = labeler(tgt, out_size=(8, 16), valid_size=sizes)
    for index, size in enumerate(sizes):
        alone = labeler(tgt[index:index + 1], out_size=(8, 16), valid_size=size)
        torch.testing.assert_close(batched.labels[index], alone.labels[0], rtol=0, atol=0)
    assert batched.labels[1, :, 9:].eq(255).all() and batched.labels[0, 6:].eq(255).all()
    with pytest.raises(ValueError, match='one per image'):
        labeler(tgt, out_size=(8, 16), valid_size=[(6, 11)])


def test_registry_and_state_dict():
    labeler = MODELS.build(dict(type='SAOTLabeler', method='saot', num_classes=C, feat_dim=D,
                                metric_rank=2, num_prototypes=2))
    src, src_lab = scenes(3, [0, 1, 2], seed=10)
    labeler.metric_steps = 3
    labeler.fit(src, src_lab)
    fresh = small('saot', metric_rank=2, center_features=True)
    fresh.load_state_dict(labeler.state_dict())
    torch.testing.assert_close(fresh.metric.up, labeler.metric.up)
    torch.testing.assert_close(fresh.prototypes.prototypes, labeler.prototypes.prototypes)
    torch.testing.assert_close(fresh.source_mean, labeler.source_mean)


def test_centering_removes_a_shared_offset():
    src, src_lab = scenes(4, [0, 1, 2], seed=11)
    tgt, tgt_lab = scenes(2, [0, 1, 2], seed=12)
    offset = 3.0 * torch.ones(1, D, 1, 1)  # a style direction that swamps the cosine
    plain = small('nn').fit(src, src_lab)(tgt + offset)
    centred = small('nn', center_features=True).fit(src, src_lab)(tgt + offset)
    acc = [float((o.raw_labels == tgt_lab).float().mean()) for o in (plain, centred)]
    assert acc[1] > 0.9 and acc[1] > acc[0] + 0.2, acc


@pytest.mark.parametrize('method', ['saot', 'ot_metric', 'knn', 'nn'])
def test_retrieved_sources_without_a_labelled_patch_are_not_in_the_bank(method):
    # fit accepted them, and a target whose K retrieved images were all unlabelled
    # crashed in the solver on zero sources
    feats, labels = scenes(3, [0, 1, 2], seed=40)
    labels[0] = 255
    labeler = small(method, num_neighbors=1).fit(feats, labels)
    assert labeler.bank_feats.shape[0] == 2
    out = labeler(feats[:1])
    assert out.labels.shape == (1, 4, 8) and torch.isfinite(out.confidence).all()


def test_metric_training_needs_no_grad_mode_and_rank_0_trains_nothing():
    # rank 0 ("fixed identity metric") and a fit under torch.no_grad() failed in
    # backward(): element 0 of tensors does not require grad
    feats, labels = scenes(3, [0, 1, 2], seed=41)
    small('saot', metric_rank=0).fit(feats, labels)
    with torch.no_grad():
        trained = small('saot').fit(feats, labels)
    assert torch.equal(trained.metric.up, small('saot').fit(feats, labels).metric.up)


def test_a_second_fit_gives_the_metric_of_a_first():
    # a second fit went on training the metric it had: labels depended on the number of
    # fits
    feats, labels = scenes(3, [0, 1, 2], seed=42)
    once, twice = small('saot').fit(feats, labels), small('saot').fit(feats, labels)
    twice.fit(feats, labels)
    assert torch.equal(once.metric.up, twice.metric.up)
    assert torch.equal(once.metric.down, twice.metric.down)


def test_training_seconds_time_the_metric_training_only():
    feats, labels = scenes(3, [0, 1, 2], seed=43)
    trained = small('saot').fit(feats, labels)
    assert trained.training_seconds > 0
    loaded = small('saot')
    loaded.load_state_dict(trained.state_dict())
    assert loaded.fit(feats, labels, train=False).training_seconds == 0.0
    assert small('knn').fit(feats, labels).training_seconds == 0.0


def test_an_images_labels_do_not_depend_on_the_images_labelled_with_it():
    # the confidence quantile of each class pooled the pixels of every image of the call:
    # with a fixed target mean, image 0 kept 103 pixels alone and 105 in a batch of three
    gen = torch.Generator().manual_seed(4)
    centres = F.normalize(torch.randn(3, 16, generator=gen), dim=1)

    def scenes(count):
        labels = torch.randint(3, (count, 4, 8), generator=gen)
        feats = centres[labels] + 0.5 * torch.randn(count, 4, 8, 16, generator=gen)
        return feats.permute(0, 3, 1, 2).contiguous(), labels

    source, source_labels = scenes(6)
    target, _ = scenes(3)
    labeler = SAOTLabeler(method='saot', num_classes=3, feat_dim=16, metric_steps=5,
                          metric_pairs=1, metric_patches=16, metric_rank=2, num_prototypes=2,
                          num_neighbors=2).fit(source, source_labels).fit_target(target)
    alone = labeler(target[:1], out_size=(8, 16))
    together = labeler(target, out_size=(8, 16))
    assert torch.equal(alone.raw_labels[0], together.raw_labels[0])
    assert torch.equal(alone.labels[0], together.labels[0])
