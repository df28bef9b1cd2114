"""Input checks shared by the feature-based entry points (``ot/_validation.py``).

Tensors on the ``meta`` device stand for a second device, so that these run without a GPU:
the checks must stop before any computation touches them.
"""
import pytest
import torch

from mmseg_saot.ot import block_sparse_sinkhorn, knn_transfer, nn_transfer, sinkhorn_online

LABELS = torch.zeros(6, dtype=torch.long)

ENTRY_POINTS = {
    'sinkhorn_online': lambda x, y, **kw: sinkhorn_online(x, y, epsilon=0.1, **kw),
    'block_sparse_sinkhorn': lambda x, y, **kw: block_sparse_sinkhorn(x, y, epsilon=0.1, **kw),
    'nn_transfer': lambda x, y: nn_transfer(x, LABELS, y),
    'knn_transfer': lambda x, y: knn_transfer(x, LABELS, y, 2, k=3),
}


@pytest.mark.parametrize('name', sorted(ENTRY_POINTS))
def test_features_on_two_devices_are_named_with_both_devices(name):
    x, y = torch.randn(6, 4), torch.randn(5, 4, device='meta')
    names = ('source_feats', 'target_feats') if 'transfer' in name else ('x', 'y')
    with pytest.raises(ValueError, match=rf'`{names[0]}` and `{names[1]}` must be on the '
                       r'same device, got cpu and meta'):
        ENTRY_POINTS[name](x, y)


@pytest.mark.parametrize('name', ['sinkhorn_online', 'block_sparse_sinkhorn'])
def test_a_projection_on_another_device_says_where_to_move_it(name):
    x, y = torch.randn(6, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match=r"`projection` must be on the features' device, "
                       r"cpu, got meta: move it with \.to\('cpu'\)"):
        ENTRY_POINTS[name](x, y, projection=torch.randn(4, 3, device='meta'))



# Options that failed deep inside (IndexError, AttributeError, a bare float() error) or
# were taken silently (topk=0, theta=nan, dropped_samples=-1).
@pytest.mark.parametrize('options, message', [
    (dict(selection='topk', topk=-1), r'`topk` must be an integer >= 1, got -1'),
    (dict(selection='topk', topk=0), r'`topk` must be an integer >= 1, got 0'),
    (dict(selection='topk', topk=2.5), r'`topk` must be an integer >= 1, got 2.5'),
    (dict(selection='truncation', theta=-1.0), r'`theta` must be a finite number >= 0, got -1'),
    (dict(selection='truncation', theta=float('nan')), r'`theta` must be a finite number'),
    (dict(tree_dims=0), r'`tree_dims` must be an integer >= 1, got 0'),
    (dict(min_blocks=0), r'`min_blocks` must be an integer >= 1, got 0'),
    (dict(dropped_samples=-1), r'`dropped_samples` must be an integer >= 0, got -1'),
    (dict(omega='fast'), r"`omega` must be 'auto' or a number in \[1, 2\), got 'fast'"),
])
def test_bad_block_sparse_options_are_named(options, message):
    x, y = torch.randn(40, 4), torch.randn(30, 4)
    with pytest.raises(ValueError, match=message):
        block_sparse_sinkhorn(x, y, epsilon=0.1, rho=1.0, block_size=8, target_block_size=4,
                              **options)


@pytest.mark.parametrize('value', [None, 'abc', '3', float('nan'), True])
def test_integer_options_that_are_not_numbers_are_named(value):
    from mmseg_saot.ot._validation import check_positive_int
    with pytest.raises(ValueError, match=r'^`k` must be an integer >= 1, got '):
        check_positive_int('k', value)
    assert check_positive_int('k', 3.0) == 3


@pytest.mark.parametrize('value', [None, '0.05', True])
@pytest.mark.parametrize('option, call', [
    ('epsilon', lambda x, y, v: sinkhorn_online(x, y, epsilon=v)),
    ('tol', lambda x, y, v: sinkhorn_online(x, y, epsilon=0.1, tol=v)),
    ('coverage', lambda x, y, v: block_sparse_sinkhorn(x, y, epsilon=0.1, coverage=v)),
    ('temperature', lambda x, y, v: knn_transfer(x, LABELS, y, 2, temperature=v)),
])
def test_number_options_that_are_not_numbers_are_named(option, call, value):
    # None gave "float() argument must be a string or a real number, not 'NoneType'"
    # or a failed comparison of float and str, naming no option; '0.05' was taken
    x, y = torch.randn(6, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match=rf'^`{option}` must be a number, got {value!r}'):
        call(x, y, value)


def test_transfer_labels_names_a_bad_chunk_size():
    from mmseg_saot.ot import cosine_cost, sinkhorn, transfer_labels
    res = sinkhorn(cosine_cost(torch.randn(6, 4), torch.randn(5, 4)), epsilon=0.1, rho=1.0)
    for plan in (res, res.plan):
        with pytest.raises(ValueError, match=r'`chunk_size` must be an integer >= 1, got -1'):
            transfer_labels(plan, LABELS, 2, chunk_size=-1)


def test_knn_checks_every_label_not_only_the_neighbours_it_picked():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 4, generator=gen)
    y = x[:5]  # each target's nearest source is itself, never source 9
    labels = torch.zeros(12, dtype=torch.long)
    labels[9] = 7
    for k in (1, 12):  # k=1 passed: the bad label was among no target's neighbours
        with pytest.raises(ValueError, match=r'`source_labels` must lie in \[0, 3\)'):
            knn_transfer(x, labels, y, 3, k=k)


def test_sqeuclidean_cost_names_both_shapes():
    from mmseg_saot.ot.costs import sqeuclidean_cost
    with pytest.raises(ValueError, match=r'`x` and `y` must share their feature dimension, '
                       r'got shapes \(5, 3\) and \(4, 2\)'):
        sqeuclidean_cost(torch.randn(5, 3), torch.randn(4, 2))


@pytest.mark.parametrize('kind', ['matrix', 'callable'])
def test_a_projection_that_makes_features_nan_is_named(kind):
    # it failed inside torch.pca_lowrank: "linalg.svd: ... non-finite values"
    x, y = torch.randn(40, 4), torch.randn(30, 4)
    matrix = torch.eye(4)
    matrix[0, 0] = float('nan')
    projection = matrix if kind == 'matrix' else (lambda feats: feats @ matrix)
    with pytest.raises(ValueError, match=r'^`projection` gave non-finite features \(NaN or '
                       r'inf\) for `x`'):
        block_sparse_sinkhorn(x, y, epsilon=0.1, rho=1.0, block_size=8, target_block_size=4,
                              projection=projection)


def test_number_options_take_what_float_takes():
    # check_real first refused 0-d numpy arrays and Decimal, which float() had taken
    from decimal import Decimal

    import numpy as np

    from mmseg_saot.ot._validation import check_real
    for value in (np.array(0.05), np.float32(0.05), Decimal('0.05'), torch.tensor(0.05)):
        assert check_real('epsilon', value) == pytest.approx(0.05)


def test_coverage_is_read_only_by_the_coverage_selection():
    # coverage=None with selection='topk' was refused once coverage was checked as a number
    x, y = torch.randn(40, 4), torch.randn(30, 4)
    res = block_sparse_sinkhorn(x, y, epsilon=0.1, rho=1.0, block_size=8,
                                target_block_size=4, selection='topk', topk=2, coverage=None)
    assert bool(torch.isfinite(res.f).all())
