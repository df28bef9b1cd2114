"""Block-sparse Sinkhorn: the dense problem restricted to a selected block support."""
import math

import pytest
import torch

from mmseg_saot.ot import block_sparse_sinkhorn, cosine_cost, sinkhorn, transfer_labels
from mmseg_saot.ot._block_select import check_support_carries_balanced
from mmseg_saot.ot.block_sparse import estimate_memory
from mmseg_saot.ot.synthetic import ClusteredFeatures

F64 = torch.float64


def _weights(n, m, seed):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=gen, dtype=F64) + 0.2
    b = torch.rand(m, generator=gen, dtype=F64) + 0.2
    return a / a.sum(), b / b.sum()


@pytest.mark.parametrize('rho', [math.inf, 1.0, (0.5, 2.0)])
@pytest.mark.parametrize('dtype', [F64, torch.float32])
def test_all_blocks_equals_dense(rho, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(150, 12, generator=gen, dtype=dtype)
    y = torch.randn(70, 12, generator=gen, dtype=dtype)
    a, b = _weights(150, 70, 1)
    a, b = a.to(dtype), b.to(dtype)
    tol = 1e-10 if dtype == F64 else 1e-6  # fp32 products: rounding floor ~1e-7
    dense = sinkhorn(cosine_cost(x, y), a, b, epsilon=0.05, rho=rho, tol=tol, num_iters=20000)
    sparse = block_sparse_sinkhorn(x, y, a, b, epsilon=0.05, rho=rho, tol=tol, num_iters=20000,
                                   block_size=16, target_block_size=8, selection='all')
    assert sparse.support_fraction == 1.0 and sparse.dropped_mass == 0.0
    assert bool(dense.converged) and bool(sparse.converged)
    # relative to the largest entry: most entries are below 1e-5, so an absolute 1e-5
    # held even with them all zeroed (measured: 6e-11 fp64 balanced, 1.1e-6 fp32)
    scale = float(dense.plan.max())
    assert float((sparse.plan - dense.plan).abs().max()) < (1e-8 if dtype == F64 else 1e-5) * scale
    if rho != math.inf:  # potentials are unique in the unbalanced case
        torch.testing.assert_close(sparse.f, dense.f, atol=1e-5, rtol=0)


def _clustered(n_src=1200, n_tgt=300, dim=64, seed=0):
    geometry = ClusteredFeatures(dim, num_classes=6, subclusters=2, noise=0.8, seed=seed,
                                 frequencies=[1, 1, 1, 1, 1, 1])
    xs, ls = geometry.sample(n_src, seed=1)
    xt, lt = geometry.sample(n_tgt, seed=2, domain_shift=0.2)
    return xs.double(), ls, xt.double(), lt


def test_truncation_on_clusters_keeps_labels_with_a_small_support():
    xs, ls, xt, lt = _clustered()
    dense = sinkhorn(cosine_cost(xs, xt), epsilon=0.05, rho=1.0, tol=1e-8)
    labels_dense = transfer_labels(dense, ls, 6).labels
    sparse = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-8, block_size=32,
                                   target_block_size=32, selection='truncation', theta=4.0,
                                   exact_dropped_mass=True)
    labels_sparse = transfer_labels(sparse, ls, 6).labels
    assert sparse.support_fraction < 0.5
    assert float((labels_sparse != labels_dense).float().mean()) <= 0.01
    assert (labels_dense == lt).float().mean() > 0.95
    # the exact dropped mass is the off-support mass of the final potentials
    off = 1.0 - (sparse.plan > 0).double()
    full = torch.exp(torch.log(sparse.a)[:, None] + torch.log(sparse.b)[None, :] +
                     (sparse.f[:, None] + sparse.g[None, :] - cosine_cost(xs, xt)) / 0.05)
    ratio = float((full * off).sum() / (full * (1 - off)).sum())
    assert abs(sparse.dropped_mass - ratio) <= 1e-9 + 1e-6 * ratio
    sampled = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-8, block_size=32,
                                    target_block_size=32, selection='truncation', theta=4.0,
                                    dropped_samples=100)
    assert 0.2 * ratio <= sampled.dropped_mass <= 5 * ratio
    assert 'dropped_mass' in sampled.timings
    # opt-in: by default the diagnostic is not computed (and not timed)
    default = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-8, block_size=32,
                                    target_block_size=32, selection='truncation', theta=4.0)
    assert math.isnan(default.dropped_mass) and 'dropped_mass' not in default.timings


@pytest.mark.parametrize('ordering', ['kmeans', 'tree'])
def test_coverage_keeps_labels_and_grows_with_coverage(ordering):
    xs, ls, xt, _ = _clustered()
    dense = sinkhorn(cosine_cost(xs, xt), epsilon=0.05, rho=1.0, tol=1e-8)
    labels_dense = transfer_labels(dense, ls, 6).labels
    supports = []
    for coverage in (0.75, 0.95):
        res = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-8, block_size=32,
                                    target_block_size=16, selection='coverage',
                                    coverage=coverage, ordering=ordering)
        changed = float((transfer_labels(res, ls, 6).labels != labels_dense).float().mean())
        assert changed <= 0.01
        supports.append(res.support_fraction)
    assert supports[0] < supports[1] < 0.6
    full = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-8, block_size=32,
                                 target_block_size=16, selection='coverage', coverage=1.0,
                                 ordering=ordering)
    assert full.support_fraction == 1.0  # every block carries some estimated mass


def test_coverage_mask_keeps_fewest_rows_reaching_the_share():
    from mmseg_saot.ot._block_select import _coverage_mask
    share = torch.tensor([[0.5, 0.05], [0.3, 0.05], [0.2, 0.9]], dtype=F64)
    mask = _coverage_mask(torch.log(share), 0.6)
    assert mask.tolist() == [[True, False], [True, False], [False, True]]
    assert _coverage_mask(torch.log(share), 0.99).tolist() == [[True, True], [True, True],
                                                               [True, True]]


def test_kmeans_blocks_partition_points_and_group_clusters():
    from mmseg_saot.ot._block_order import _kmeans_blocks
    gen = torch.Generator().manual_seed(0)
    centres = 10 * torch.randn(5, 8, generator=gen)
    labels = torch.arange(500) % 5
    z = centres[labels] + torch.randn(500, 8, generator=gen)
    blocks = _kmeans_blocks(z, 50, num_centroids=5)
    assert blocks.shape == (10, 50)
    assert sorted(blocks.reshape(-1).tolist()) == list(range(500))
    # well separated clusters of 100 points: every block is pure
    assert all(len(set(labels[b].tolist())) == 1 for b in blocks)
    padded = _kmeans_blocks(z[:480], 50, num_centroids=5)
    assert padded.shape == (10, 50) and int((padded == 480).sum()) == 20


def test_kmeans_helpers_nearest_centre_and_farthest_points():
    from mmseg_saot.ot._block_order import _farthest_points, _nearest
    gen = torch.Generator().manual_seed(1)
    pts, centres = torch.randn(300, 6, generator=gen), torch.randn(7, 6, generator=gen)
    assert torch.equal(_nearest(pts, centres), torch.cdist(pts, centres).argmin(1))
    # greedy: the second centre is the point farthest from the first, and so on
    line = torch.tensor([[0.0], [1.0], [10.0], [4.0]])
    assert _farthest_points(line, 3).view(-1).tolist() == [0.0, 10.0, 4.0]
    # more centroids than points: the points are repeated, none invented
    few = _farthest_points(line[:2], 5)
    assert few.shape == (5, 1) and set(few.view(-1).tolist()) == {0.0, 1.0}


def test_support_matches_plan_and_topk_keeps_k_blocks():
    xs, _, xt, _ = _clustered(n_src=400, n_tgt=100)
    res = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, block_size=20,
                                target_block_size=25, selection='topk', topk=3, tol=1e-7)
    nonzero = float((res.plan > 0).double().mean())
    assert abs(nonzero - res.support_fraction) < 1e-12
    assert res.support_fraction >= 3 * 20 / 400 - 1e-12
    assert torch.isfinite(res.f).all() and torch.isfinite(res.g).all()


def test_restricted_problem_is_solved():
    # On its support, the block-sparse plan satisfies the unbalanced first-order
    # conditions of the restricted problem.
    xs, _, xt, _ = _clustered(n_src=400, n_tgt=100, seed=3)
    rho = 1.0
    res = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=rho, block_size=20, theta=2.0,
                                selection='truncation', target_block_size=128,
                                tol=1e-11, num_iters=20000)
    plan = res.plan
    torch.testing.assert_close(plan.sum(1), res.a * torch.exp(-res.f / rho), atol=1e-11, rtol=0)
    torch.testing.assert_close(plan.sum(0), res.b * torch.exp(-res.g / rho), atol=1e-11, rtol=0)


def test_memory_estimate_full_resolution_fits_16gb():
    est = estimate_memory(num_src=8 * 73 * 146, num_tgt=73 * 146, dim=1024, support_fraction=0.5)
    assert est['block_sparse_bytes'] < 16 * 2**30
    assert est['block_sparse_bytes'] < est['dense_bytes']


@pytest.mark.parametrize('selection', ['coverage', 'topk'])
def test_a_source_block_without_mass_is_scored_by_its_plain_mean(selection):
    # its weighted mean divided 0 by 0: the NaN block cost crashed coverage selection
    # ("`cost` contains NaN values") and topk ranked those blocks first
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 6, generator=gen, dtype=F64), torch.randn(30, 6, generator=gen,
                                                                        dtype=F64)
    a = torch.zeros(64, dtype=F64)
    a[:3] = 1 / 3  # blocks 2-4 of 16 sources carry no mass
    res = block_sparse_sinkhorn(x, y, a, None, epsilon=0.05, rho=0.5, block_size=16,
                                target_block_size=8, selection=selection, topk=2)
    assert torch.isfinite(res.f).all() and bool(res.converged)


def test_block_sparse_input_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match='selection'):
        block_sparse_sinkhorn(x, x, epsilon=0.1, selection='random')
    with pytest.raises(ValueError, match='ordering'):
        block_sparse_sinkhorn(x, x, epsilon=0.1, ordering='random')
    with pytest.raises(ValueError, match='coverage'):
        block_sparse_sinkhorn(x, x, epsilon=0.1, coverage=0.0)
    with pytest.raises(ValueError, match='topk'):
        block_sparse_sinkhorn(x, x, epsilon=0.1, selection='topk')
    with pytest.raises(ValueError, match='feature dimension'):
        block_sparse_sinkhorn(x, x[:, :2], epsilon=0.1)
    with pytest.raises(ValueError, match=r'`projection` must have shape \(D, D\'\) = \(4, '
                       r"D'\) for features of dimension D = 4, got \(3, 2\)"):
        block_sparse_sinkhorn(x, x, epsilon=0.1, projection=torch.randn(3, 2))
    with pytest.raises(ValueError, match=r'balanced OT \(rho=inf\) needs equal total masses'):
        block_sparse_sinkhorn(x, x, torch.full((10,), 0.5), epsilon=0.1)
    # a numpy scalar theta was refused as "not a finite number" (rho takes them)
    import numpy as np
    expected = block_sparse_sinkhorn(x, x, epsilon=0.1, rho=1.0, selection='truncation',
                                     theta=2.0).f
    result = block_sparse_sinkhorn(x, x, epsilon=0.1, rho=1.0, selection='truncation',
                                   theta=np.float32(2.0))
    torch.testing.assert_close(result.f, expected)
    with pytest.raises(ValueError, match='`theta` must be a finite number >= 0, got True'):
        block_sparse_sinkhorn(x, x, epsilon=0.1, selection='truncation', theta=True)


def test_block_sparse_takes_features_of_two_dtypes_as_the_wider():
    xs, ls, xt, _ = _clustered(n_src=120, n_tgt=40, seed=1)
    kwargs = dict(epsilon=0.05, rho=1.0, tol=1e-9, block_size=16, target_block_size=8,
                  selection='all')
    mixed = block_sparse_sinkhorn(xs.double(), xt, **kwargs)
    wide = block_sparse_sinkhorn(xs.double(), xt.double(), **kwargs)
    assert mixed.f.dtype == torch.float64
    torch.testing.assert_close(mixed.f, wide.f, rtol=0, atol=0)


def _coverage_result(**kwargs):
    xs, ls, xt, _ = _clustered(n_src=600, n_tgt=200, seed=4)
    res = block_sparse_sinkhorn(xs, xt, epsilon=0.05, rho=1.0, tol=1e-9, block_size=16,
                                target_block_size=8, selection='coverage', coverage=0.75,
                                **kwargs)
    return xs, ls, xt, res


def test_width_buckets_split_where_padding_drops_most():
    from mmseg_saot.ot._block_layout import _BUCKET_WASTE, _MAX_BUCKETS, _width_buckets
    assert _width_buckets([3, 3, 3, 3]) == [(0, 4)]
    assert _width_buckets([1, 1, 1, 10]) == [(0, 3), (3, 4)]
    widths = sorted((torch.arange(100) % 37 + 1).tolist())
    bounds = _width_buckets(widths)
    assert bounds[0][0] == 0 and bounds[-1][1] == 100 and len(bounds) <= _MAX_BUCKETS
    assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
    padded = sum(widths[j1 - 1] * (j1 - j0) for j0, j1 in bounds)
    assert len(bounds) == _MAX_BUCKETS or padded <= (1 + _BUCKET_WASTE) * sum(widths)


def test_padded_layout_holds_each_kept_entry_once_and_padding_carries_no_mass():
    xs, _, xt, res = _coverage_result()
    sup = res._support
    n, m = xs.shape[0], xt.shape[0]
    assert sup.num_buckets > 1  # mixed widths: several buckets
    widths = [s.shape[1] for s in sup.src]
    assert widths == sorted(widths)
    seen = torch.zeros(n + 1, m + 1, dtype=torch.long)
    for tgt, src, blk in res.support_batches(max_entries=500):
        assert blk.shape == (tgt.shape[0], tgt.shape[1], src.shape[1])
        pad = (tgt[:, :, None] == m) | (src[:, None, :] == n)
        assert bool((blk[pad] == 0).all()) and bool(torch.isfinite(blk).all())
        rows = src[:, None, :].expand_as(blk)[~pad]
        cols = tgt[:, :, None].expand_as(blk)[~pad]
        seen.index_put_((rows, cols), torch.ones(1, dtype=torch.long), accumulate=True)
    assert int(seen.max()) == 1 and int(seen.sum()) == sup.num_entries
    # every padded column has the cost that makes its kernel entry exactly zero
    from mmseg_saot.ot.block_sparse import _PAD_COST
    for k in range(sup.num_buckets):
        assert bool((sup.view(res._cost, k)[(sup.src[k] == n)[:, None, :].expand(
            -1, sup.bt, -1)] == _PAD_COST).all())


def test_batched_votes_equal_per_block_votes():
    _, ls, _, res = _coverage_result()
    votes = torch.zeros(res.g.shape[0], 6, dtype=F64)
    onehot = torch.nn.functional.one_hot(ls.long(), 6).to(F64)
    for tgt, src, blk in res.support_blocks():
        votes[tgt] += blk @ onehot[src]
    out = transfer_labels(res, ls, 6)
    torch.testing.assert_close(out.mass, votes.sum(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.probs, votes / votes.sum(1, keepdim=True), rtol=1e-12,
                               atol=1e-15)


def test_log_operator_equals_kernel_operator_on_padded_layout():
    from mmseg_saot.ot._block_layout import _padded_log
    from mmseg_saot.ot._block_operators import BlockKernelOperator, BlockLogOperator
    _, _, _, res = _coverage_result()
    sup = res._support
    log_rows = _padded_log(res.b, sup.tgt.reshape(-1))
    log_cols = torch.cat([torch.log(res.a), res.a.new_full((1,), -math.inf)]).unsqueeze(0)
    gen = torch.Generator().manual_seed(0)
    f = 0.1 * torch.randn(log_rows.shape, generator=gen, dtype=F64)
    g = 0.1 * torch.randn(log_cols.shape, generator=gen, dtype=F64)
    g[:, -1] = 0.0
    kern = BlockKernelOperator(res._cost, sup, log_rows, log_cols, 0.05, F64)
    kern.set_epsilon(0.05, torch.zeros_like(f), torch.zeros_like(g))
    log = BlockLogOperator(res._cost, sup, log_rows, log_cols, 0.05)
    torch.testing.assert_close(kern.softmin_rows(g), log.softmin_rows(g), rtol=0, atol=1e-10)
    t_kern, t_log = kern.softmin_cols(f), log.softmin_cols(f)
    torch.testing.assert_close(t_kern, t_log, rtol=0, atol=1e-10)
    kern._absorb(f, g)  # in-place absorption keeps the operator exact
    torch.testing.assert_close(kern.softmin_cols(f), t_log, rtol=0, atol=1e-10)


def test_exact_dropped_mass_matches_off_support_mass_of_the_final_potentials():
    # The diagnostic is large when sources lose the targets they need: their restricted
    # potentials rise, which the ratio (independent of the target potentials) measures.
    xs, _, xt, res = _coverage_result(exact_dropped_mass=True)
    full = torch.exp(torch.log(res.a)[:, None] + torch.log(res.b)[None, :] +
                     (res.f[:, None] + res.g[None, :] - cosine_cost(xs, xt)) / 0.05)
    on = res.plan > 0
    ratio = float(full[~on].sum() / full[on].sum())
    assert abs(res.dropped_mass - ratio) <= 1e-9 + 1e-9 * ratio
    torch.testing.assert_close(full[on], res.plan[on], rtol=1e-12, atol=0)


def test_a_zero_weight_target_leaves_the_worst_dropped_ratio_to_the_others():
    # in fp32 a target of zero weight gave 0/0 = NaN, and max(0.0, nan) reported a
    # worst ratio of 0.0 for the whole problem
    xs, _, xt, _ = _clustered(n_src=600, n_tgt=200, seed=4)
    xs, xt = xs.float(), xt.float()
    b = torch.full((200,), 1 / 200)
    b[0] = 0.0
    res = block_sparse_sinkhorn(xs, xt, None, b, epsilon=0.05, rho=1.0, tol=1e-6,
                                block_size=16, target_block_size=8, selection='coverage',
                                coverage=0.75, exact_dropped_mass=True)
    full = torch.exp(torch.log(res.a.double())[:, None] + torch.log(b.double())[None, :] +
                     (res.f.double()[:, None] + res.g.double()[None, :] -
                      cosine_cost(xs.double(), xt.double())) / 0.05)
    on = res.plan > 0
    ratios = (torch.where(on, 0.0, full).sum(0) / torch.where(on, full, 0.0).sum(0))[1:]
    assert float(ratios.max()) > 0.01
    assert res.dropped_mass_worst == pytest.approx(float(ratios.max()), rel=1e-3)


def _one_sided_support_problem():
    """Every source block is nearest to target block 0; block 1 holds 99 % of the mass."""
    gen = torch.Generator().manual_seed(0)
    y = torch.zeros(32, 16)
    y[:16, 0] = 1.0
    y[16:, 1] = 1.0
    y = y + 0.01 * torch.randn(32, 16, generator=gen)
    x = torch.zeros(256, 16)
    x[:, 0], x[:, 1] = 1.0, 0.5
    x = x + 0.05 * torch.randn(256, 16, generator=gen)
    b = torch.ones(32)
    b[16:] = 100.0
    return x, y, b / b.sum()


def test_a_support_that_cannot_carry_balanced_marginals_is_named():
    # it ran to num_iters and warned "did not converge ... increase `num_iters`",
    # which cannot help: no plan on that support has these marginals
    x, y, b = _one_sided_support_problem()
    kw = dict(epsilon=0.05, block_size=16, target_block_size=16, selection='topk', topk=1,
              num_iters=300)
    with pytest.raises(ValueError, match=(
            r'the selected block support cannot carry balanced marginals: target block 1 '
            r'holds mass 0\.990\d but the blocks it is joined to hold only 0\.0625.*'
            r"`topk`.*`min_blocks`.*selection='all'.*finite `rho`")):
        block_sparse_sinkhorn(x, y, None, b, **kw)
    # unbalanced, the same support is fine
    result = block_sparse_sinkhorn(x, y, None, b, rho=0.5, warn=False, **kw)
    assert torch.isfinite(result.f).all() and torch.isfinite(result.g).all()


@pytest.mark.parametrize('side', ['source', 'target'])
def test_support_check_reads_both_sides_and_only_balanced_problems(side):
    # source block 1 (0.6) is joined to target block 0 (0.5) only; the targets are fine
    keep = torch.tensor([[True, True, True], [True, False, False]])
    mass_src, mass_tgt = torch.tensor([0.4, 0.6]), torch.tensor([0.5, 0.25, 0.25])
    if side == 'target':  # the same problem transposed
        keep, mass_src, mass_tgt = keep.t().contiguous(), mass_tgt, mass_src
    with pytest.raises(ValueError, match=f': {side} block 1 holds mass 0.6 but the blocks it '
                       'is joined to hold only 0.5'):
        check_support_carries_balanced(keep, mass_src, mass_tgt, (math.inf, math.inf))
    for rho in ((1.0, math.inf), (math.inf, 1.0), (1.0, 1.0)):
        check_support_carries_balanced(keep, mass_src, mass_tgt, rho)
    check_support_carries_balanced(keep | True, mass_src, mass_tgt, (math.inf, math.inf))
