"""Block-sparse fast paths equal their plain definitions.

Block-order column moves, the source-major cost written straight into the layout,
embedding-bag block means, the partial-sort coverage mask and the thread setting.
"""
import math

import pytest
import torch

from mmseg_saot.ot import block_sparse_sinkhorn, cosine_cost, sinkhorn, transfer_labels
from mmseg_saot.ot import _loop
from mmseg_saot.ot.costs import sqeuclidean_cost
from mmseg_saot.ot.synthetic import ClusteredFeatures

F64 = torch.float64


def _features(n_src, n_tgt, seed=3):
    geometry = ClusteredFeatures(32, num_classes=5, subclusters=2, noise=0.8, seed=seed,
                                 frequencies=[1, 1, 1, 1, 1])
    xs, ls = geometry.sample(n_src, seed=1)
    xt, _ = geometry.sample(n_tgt, seed=2, domain_shift=0.2)
    return xs.double(), ls, xt.double()


def _solve(xs, xt, **kwargs):
    args = dict(epsilon=0.05, rho=1.0, tol=1e-6, block_size=16, target_block_size=8,
                selection='coverage', coverage=0.75)
    args.update(kwargs)
    return block_sparse_sinkhorn(xs, xt, **args)


def _dense_support_cost(res, cost):
    """``(C, kept)``: the layout's cost and mask of real entries, from a dense cost."""
    sup = res._support
    n, m = cost.shape
    padded = torch.full((n + 1, m + 1), math.nan, dtype=cost.dtype)
    padded[:n, :m] = cost
    parts, kept = [], []
    for k in range(sup.num_buckets):
        tgt = sup.tgt[sup.rows(k).start // sup.bt:sup.rows(k).stop // sup.bt]
        src = sup.src[k]
        parts.append(padded[src[:, None, :], tgt[:, :, None]])
        kept.append((tgt[:, :, None] < m) & (src[:, None, :] < n))
    return parts, kept


@pytest.mark.parametrize('metric', ['cosine', 'sqeuclidean', 'callable'])
def test_support_cost_equals_dense_cost_on_every_kept_entry(metric):
    # 7 source blocks of 16 (odd: the last product has one real block, the last block
    # is padded) against 13 target blocks of 8.
    xs, _, xt = _features(103, 100)
    if metric == 'callable':
        cost_arg, dense = (lambda x, y: sqeuclidean_cost(x, y)), sqeuclidean_cost(xs, xt)
    elif metric == 'sqeuclidean':
        cost_arg, dense = 'sqeuclidean', sqeuclidean_cost(xs, xt)
    else:
        cost_arg, dense = 'cosine', cosine_cost(xs, xt)
    res = _solve(xs, xt, cost=cost_arg, coverage=0.6)
    assert 0.0 < res.support_fraction < 1.0
    sup = res._support
    from mmseg_saot.ot.block_sparse import _PAD_COST
    for k, (ref, kept) in enumerate(zip(*_dense_support_cost(res, dense))):
        got = sup.view(res._cost, k)
        torch.testing.assert_close(got[kept], ref[kept], rtol=0, atol=1e-12)
        src_pad = (sup.src[k] == xs.shape[0])[:, None, :].expand_as(got)
        assert bool((got[src_pad] == _PAD_COST).all())


def test_product_rows_send_every_kept_tile_row_to_its_layout_row_once():
    xs, _, xt = _features(150, 90)
    res = _solve(xs, xt)
    sup = res._support
    keep = torch.zeros(sup.pair_base.shape, dtype=torch.bool)
    keep[sup.pair_base >= 0] = True
    for group in (1, 2, 3):
        js, counts, dest, scratch = sup.product_rows(keep, group)
        assert sum(counts) == js.shape[0] and dest.shape[0] == js.shape[0] * sup.bt * group
        layout = dest[dest < sup.size // sup.pair_block]
        # every kept tile row exactly once: bt rows per kept pair
        assert layout.unique().shape[0] == layout.shape[0] == int(keep.sum()) * sup.bt
        rows = dest[dest >= sup.size // sup.pair_block] - sup.size // sup.pair_block
        assert rows.numel() == 0 or int(rows.max()) < scratch
        d0 = 0  # scratch rows are unique within a product
        for count in counts:
            part = dest[d0:d0 + count * sup.bt * group]
            part = part[part >= sup.size // sup.pair_block]
            assert part.unique().shape[0] == part.shape[0]
            d0 += count * sup.bt * group


def test_block_order_column_moves_equal_single_entry_gather_and_scatter():
    xs, _, xt = _features(150, 90)
    res = _solve(xs, xt)
    sup = res._support
    n = xs.shape[0]
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(n + 1, generator=gen, dtype=F64)
    for got, src in zip(sup.gather_cols(values), sup.src):
        assert torch.equal(got, values[src])
    parts = [torch.randn(s.shape, generator=gen, dtype=F64) for s in sup.src]
    # padding columns (index N) carry zeros, as the kernel's padding does
    parts = [torch.where(s < n, p, torch.zeros_like(p)) for p, s in zip(parts, sup.src)]
    ref = torch.zeros(n + 1, dtype=F64).scatter_add_(
        0, sup.src_flat, torch.cat([p.reshape(-1) for p in parts]))
    torch.testing.assert_close(sup.scatter_cols(parts, n + 1), ref, rtol=1e-12, atol=1e-12)
    onehot = torch.randn(n + 1, 3, generator=gen, dtype=F64)
    for k, c0, c1 in sup.chunks(200):
        assert torch.equal(sup.chunk_cols(sup.by_block(onehot), k, c0, c1),
                           onehot[sup.src[k][c0:c1]])


def test_embedding_bag_block_means_equal_weighted_means():
    from mmseg_saot.ot.block_sparse import _Features
    xs, _, xt = _features(100, 40)
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(100, generator=gen, dtype=F64) + 0.1
    blocks = torch.cat([torch.randperm(100, generator=gen), torch.full((12,), 100)]).view(7, 16)
    feats = _Features(xs, xt, 'cosine', None)
    yb = feats.blocked(xt, torch.arange(40).view(5, 8))
    got = feats.block_cost(yb, blocks, a)
    unit = torch.nn.functional.normalize(xs, dim=1)
    means = torch.stack([(a[b[b < 100]][:, None] * unit[b[b < 100]]).sum(0) / a[b[b < 100]].sum()
                         for b in blocks])
    ref = 1.0 - means @ yb.reshape(-1, 32).t()
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_partial_sort_coverage_mask_equals_full_sort():
    from mmseg_saot.ot._block_select import _coverage_mask
    gen = torch.Generator().manual_seed(0)
    # peaked and diffuse columns: the diffuse ones need more rows than first_k
    score = torch.randn(60, 40, generator=gen, dtype=F64) * torch.linspace(0.1, 8.0, 40)
    for coverage in (0.5, 0.75, 0.95, 1.0):
        share = torch.softmax(score.t(), dim=1).t()  # the shares it ranks (same rounding)
        top, order = share.sort(dim=0, descending=True)
        ref = torch.zeros_like(share, dtype=torch.bool).scatter_(
            0, order, (top.cumsum(0) - top) < coverage)
        for first_k in (1, 4, 32, 100):
            assert torch.equal(_coverage_mask(score, coverage, first_k=first_k), ref)


def test_block_loop_uses_torch_threads_and_dense_loop_one():
    seen = {}
    run = _loop.run

    def spy(op, *args, **kwargs):
        out = run(op, *args, **kwargs)
        seen[type(op).__name__] = getattr(op, 'cpu_threads', _loop.CPU_THREADS)
        return out

    previous = torch.get_num_threads()
    _loop.run = spy
    try:
        xs, _, xt = _features(60, 30)
        _solve(xs, xt, tol=1e-6)
        sinkhorn(cosine_cost(xs, xt), epsilon=0.05, rho=1.0, tol=1e-6)
    finally:
        _loop.run = run
    assert seen['BlockKernelOperator'] is None  # torch's setting
    assert seen['KernelOperator'] == _loop.CPU_THREADS
    assert torch.get_num_threads() == previous
    with _loop.cpu_threads(torch.device('cpu'), 1):
        assert torch.get_num_threads() == 1
    with _loop.cpu_threads(torch.device('cpu'), None):
        assert torch.get_num_threads() == previous
    assert torch.get_num_threads() == previous


def test_votes_from_block_gathers_equal_plan_votes():
    xs, ls, xt = _features(150, 90)
    res = _solve(xs, xt)
    onehot = torch.nn.functional.one_hot(ls.long(), 5).to(F64)
    votes = res.plan.t() @ onehot
    out = transfer_labels(res, ls, 5)
    torch.testing.assert_close(out.mass, votes.sum(1), rtol=1e-12, atol=0)
    torch.testing.assert_close(out.probs, votes / votes.sum(1, keepdim=True), rtol=1e-12,
                               atol=1e-15)
