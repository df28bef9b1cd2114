"""Block-sparse Sinkhorn: the cost is evaluated only on selected (source x target) blocks.

The solver restricts the problem of :func:`sinkhorn` to a support
:math:`S = \\bigcup_{(I, J) \\in \\mathcal B} I \\times J` of block pairs,

.. math::
    \\min_{P \\ge 0,\\ \\mathrm{supp} P \\subseteq S}\\; \\langle P, C\\rangle
    + \\varepsilon\\,\\mathrm{KL}(P | a b^\\top)
    + \\rho_a \\mathrm{KL}(P\\mathbf 1 | a) + \\rho_b \\mathrm{KL}(P^\\top \\mathbf 1 | b),

(the KL reference is ``a b^T`` restricted to S), in four steps:

1. *Blocks*: source and target points are projected on a ``tree_dims``-dimensional PCA
   basis and ordered (``ordering='kmeans'``, default) by their nearest of 64 k-means
   centroids fitted on a subsample, or (``'tree'``) by a PCA tree (recursive median
   splits along the top principal direction), then cut into blocks of ``block_size`` /
   ``target_block_size`` points, so that a block holds similar features.
2. *Selection*: a semi-coarse problem, source blocks (block masses, block-average
   costs) against single targets, is solved with the same epsilon and rho: its plan
   :math:`A_I b_j e^{(F_I + g_j - \\bar C_{Ij})/\\varepsilon}` estimates where each
   target's mass comes from, i.e. target j's share
   :math:`s_{Ij} = \\mathrm{softmax}_I(\\log A_I + (F_I - \\bar C_{Ij})/\\varepsilon)`.
   ``'coverage'`` (default) keeps, per target, the fewest source blocks whose shares
   sum to ``coverage``; ``'truncation'`` keeps those within a factor :math:`e^\\theta` of
   its best one (Schmitzer 2019's kernel truncation, made relative per target). In both,
   a target block keeps the union over its targets (minority targets of a mixed block
   keep what they need: a per-target-block aggregate of the shares changed 2-4x more
   labels at the same support in an analysis of the dense plan). ``'topk'`` keeps, per
   target, the ``topk`` source blocks of lowest block-average cost; ``'all'`` keeps
   every pair (then the result equals the dense solver). Each target block keeps at
   least ``min_blocks`` source blocks and every source block at least one target
   block. For the cosine cost the block-average cost is exact:
   :math:`\\bar C_{Ij} = 1 - \\langle \\bar x_I, y_j \\rangle` with the
   mass-weighted block mean of the unit features.
3. *Layout and costs*: target blocks are sorted by width (kept source columns) and
   grouped into at most 8 width buckets; bucket k is one dense ``(J_k, bt, W_k)`` tensor
   whose short rows are padded with a zero-mass dummy source (see :class:`_Support`).
   Costs are computed for 2 source blocks at a time against the target blocks that keep
   them (no prepared copy of all sources is kept; the gathered source rows are scaled
   to unit norm), one GEMM with its offset (``1 - <y, x>``) each, whose rows of
   ``block_size`` entries are copied straight into the layout (rows of tiles that are
   not kept go to scratch rows); nothing else is stored.
4. *Sinkhorn* on the support, with the same dual iteration as the dense solver
   (``_loop.py``, on all CPU threads here), in kernel space with absorption, each
   half-step one batched product per bucket; column vectors are gathered and their
   sums added as rows of ``block_size`` entries in source-block order (the layout's
   columns are whole source blocks); a log-domain rescue.

On request (``dropped_samples > 0`` or ``exact_dropped_mass=True``; off by default, it
costs full cost rows), the mass that the dropped pairs would carry under the final
potentials is measured exactly on a random sample of targets (all targets if exact)
and reported relative to the transported mass. A block-average estimate would be
useless here: by Jensen's inequality ``exp(-mean C / eps)`` underestimates the mean
kernel of a block by orders of magnitude at small epsilon.

Memory: the features, a prepared copy of the targets, the cost (fp32) and kernel
(storage dtype) on the padded support (<= 10 % padding at SAOT's working point), and
one gathered feature block; see :func:`estimate_memory`.

Code: this module holds the entry point, the result and the cost features; the steps
live in ``_block_order.py`` (1), ``_block_select.py`` (2), ``_block_layout.py`` (3, the
padded support) and ``_block_operators.py`` (4).

Measured limits (``benchmarks/ot_cpu.md``, ``ot_cuda.md``): at eps 0.05 the plan of
clustered features is diffuse (about 12 % of a target's mass comes from other classes):
covering 90 % of every target's true mass takes ~20-30 % of the entries. Labels are more
robust: coverage 0.75 with 16-target blocks keeps 13 % of the entries and changes 0.84-0.95 %
of the labels (0.7: 10-12 %, 1.0-1.2 %). That is the benchmark's draw (seed 0) of the
synthetic working point; on four other draws the plans are more diffuse and coverage 0.75
keeps 24-49 % of the entries and changes 0.1-3.5 % of the labels (near-ties of the dense
vote); coverage 0.95 keeps 36-70 % and changes at most 0.95 %
(``benchmarks/ot_cpu_block_seeds.md``). Real ViT-S/14 features of street scenes behave
like the diffuse draws: 0.75 keeps 20-27 % and changes 2.2-3.9 %, 0.95 keeps 32-40 % and
changes 0.9-1.4 % (``benchmarks/ot_cpu_block_streets*.md``). With the padded layout (8 width buckets, 10 %
padding) the whole labelling takes 0.8-1.16 s against 3.9-4.4 s dense on 2 CPU cores
(3.8-4.9x on the benchmark's draw, ``benchmarks/ot_cpu_block.md``; before the block-order
column moves, direct cost rows and threaded loop: 1.3-1.6 s, 2.4-3.1x): phases order
0.15-0.19 s (0.08-0.10 s since the k-means order uses matrix-product distances, a
1024-point farthest-point start and a 2 x 1024-row PCA sample), select
0.11-0.14 s, cost 0.31-0.35 s (~0.16 s of GEMM at 1.2x the support's entries), solve
0.26-0.37 s (40 iterations, two memory-bound products of ~2.2 ms each on 2 threads),
transfer ~0.04 s. Order and select do not shrink with the support, and cost and solve
are near their GEMM and memory floors, so 5x is at the edge there. On an H200 (measured
before these CPU changes): 0.17 s against 0.034 s dense (the ragged loop: 0.6 s), bound
by the ~170 small cost products and host syncs of the cost and selection phases (cost
0.074 s, solve 0.048 s). Peak memory stays far below the dense solver's: the padded
support cost and kernel take 71 MB at the working point against 480 MB (sampled peak
RSS increase on CPU: 18 vs 493-506 MB; 17-84 MB before the block means stopped
gathering all sources).
The dropped-mass diagnostic is large here (about 2 on CPU, 44 on the H200, for 64
sampled targets) and correct: the target-centric selection leaves some sources without
the targets they need, their restricted potentials rise by up to ~7 epsilon, and the
ratio, which does not depend on the target potentials, measures that rise.
"""
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch

from . import _loop
from ._block_diagnostics import _dropped_mass
from ._block_features import _PAD_COST, _Features  # noqa: F401  (_PAD_COST: tests)
from ._block_layout import _BUCKET_WASTE, _padded_log, _Support
from ._block_operators import BlockKernelOperator, BlockLogOperator
from ._block_order import _order_blocks
from ._block_select import (_block_mass, _block_weights, _select,
                            check_support_carries_balanced)
from ._validation import (FLOAT_DTYPES, Rho, balanced_masses, check_epsilon,
                          check_feature_pair, check_positive_int, check_projection, check_real,
                          marginal, parse_rho)
from .costs import Metric
from .sinkhorn import DEFAULT_OMEGA, DUAL_DTYPE, make_config

SELECTIONS = ('coverage', 'truncation', 'topk', 'all')
ORDERINGS = ('kmeans', 'tree')


@dataclass
class BlockSparseResult:
    """Solution of the block-sparse problem, with its support.

    Attributes:
        f: ``(N,)`` source potential (cost units), original order.
        g: ``(M,)`` target potential.
        a, b: weights used.
        epsilon, rho: as in :class:`SinkhornResult`.
        num_iters, converged, marginal_error, method: as in :class:`SinkhornResult`
            (the marginal error is that of the restricted problem).
        support_fraction: kept entries / (N M).
        num_block_pairs: kept (source block, target block) pairs.
        dropped_mass: mass the dropped pairs would carry under the final potentials,
            relative to the transported mass; estimated on ``dropped_samples`` random
            targets (exact over all targets if ``exact_dropped_mass``); NaN if not
            requested (the default), 0 if every pair is kept.
        dropped_mass_worst: the largest such ratio of a single evaluated target.
        timings: seconds spent per phase (``order``, ``select``, ``cost``, ``solve``, and
            ``dropped_mass`` when requested).
    """

    f: torch.Tensor
    g: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    epsilon: float
    rho: tuple
    num_iters: int
    converged: torch.Tensor
    marginal_error: torch.Tensor
    method: str
    support_fraction: float
    num_block_pairs: int
    dropped_mass: float
    dropped_mass_worst: float
    timings: dict = field(default_factory=dict)
    _cost: Optional[torch.Tensor] = field(default=None, repr=False)  # flat support cost
    _support: Any = field(default=None, repr=False)

    def support_batches(self, max_entries: int = 1 << 20,
                        col_values: Optional[torch.Tensor] = None):
        """Yield ``(target_idx (c, bt), source_idx (c, W), plan (c, bt, W))`` for chunks of
        ``c`` target blocks of one width bucket (at most ``max_entries`` plan entries).

        The plan chunk is :math:`P^\top` restricted to the blocks (rows = targets);
        padding slots have index ``M`` (targets) or ``N`` (sources) and plan exactly 0.

        Args:
            max_entries: plan entries per chunk.
            col_values: optional ``(N + 1, C)`` per-source values (row N: padding); then
                a 4th item, ``col_values[source_idx]`` ``(c, W, C)``, is yielded, gathered
                as whole source blocks (label votes: one-hot rows).
        """
        pad = self.f.new_full((1,), -math.inf)
        sup = self._support
        # a_i e^{f_i / eps} and b_j e^{g_j / eps} in log form; zero-mass dummies
        col_term = torch.cat([torch.log(self.a) + self.f / self.epsilon, pad])
        row_term = torch.cat([torch.log(self.b) + self.g / self.epsilon, pad])
        col_blocks = sup.by_block(col_term)
        val_blocks = None if col_values is None else sup.by_block(col_values)
        for k, c0, c1 in sup.chunks(max_entries):
            tgt = sup.tgt.reshape(-1)[sup.rows(k, c0, c1)].view(-1, sup.bt)
            src = sup.src[k][c0:c1]
            cost = sup.view(self._cost, k)[c0:c1].to(self.f.dtype)
            expo = torch.add(row_term[tgt][:, :, None] + sup.chunk_cols(col_blocks, k, c0, c1)
                             [:, None, :], cost, alpha=-1.0 / self.epsilon)
            plan = torch.exp_(expo)
            if val_blocks is None:
                yield tgt, src, plan
            else:
                yield tgt, src, plan, sup.chunk_cols(val_blocks, k, c0, c1)

    def support_blocks(self):
        """Yield ``(target_idx (bt,), source_idx (n,), plan block (bt, n))`` per target block.

        Padding slots are removed; the plan block is :math:`P^\\top` restricted to the
        block (rows = targets).
        """
        n_src, n_tgt = self.f.shape[0], self.g.shape[0]
        for tgts, srcs, blocks in self.support_batches():
            for tgt, src, blk in zip(tgts, srcs, blocks):
                tk, sk = tgt < n_tgt, src < n_src
                yield tgt[tk], src[sk], blk[tk][:, sk]

    @property
    def plan(self) -> torch.Tensor:
        """Dense ``(N, M)`` plan, zero off the support (small problems only)."""
        n_src, n_tgt = self.f.shape[0], self.g.shape[0]
        plan = self.f.new_zeros((n_src + 1, n_tgt + 1))  # last row/column: padding
        for tgt, src, blk in self.support_batches():
            plan[src[:, None, :], tgt[:, :, None]] = blk
        return plan[:n_src, :n_tgt]


def block_sparse_sinkhorn(x: torch.Tensor,
                          y: torch.Tensor,
                          a: Optional[torch.Tensor] = None,
                          b: Optional[torch.Tensor] = None,
                          *,
                          epsilon: float,
                          rho: Rho = math.inf,
                          cost: Metric = 'cosine',
                          projection: Optional[Union[torch.Tensor, Callable]] = None,
                          block_size: int = 64,
                          target_block_size: int = 16,
                          selection: str = 'coverage',
                          theta: float = 4.0,
                          coverage: float = 0.75,
                          topk: Optional[int] = None,
                          min_blocks: int = 1,
                          tree_dims: int = 32,
                          ordering: str = 'kmeans',
                          num_iters: int = 1000,
                          tol: float = 1e-6,
                          check_every: int = 10,
                          omega: Union[str, float] = DEFAULT_OMEGA,
                          translation_invariant: bool = True,
                          storage_dtype: Optional[torch.dtype] = None,
                          dropped_samples: int = 0,
                          exact_dropped_mass: bool = False,
                          warn: bool = True) -> BlockSparseResult:
    """Solve the problem of :func:`sinkhorn` restricted to a block support.

    See the module docstring for the algorithm. Not differentiable (labelling path).

    Args:
        x: ``(N, D)`` source features; y: ``(M, D)`` target features.
        a, b: weights (default uniform).
        epsilon: entropic regularisation, in cost units.
        rho: marginal penalty (number or pair); ``inf`` = balanced. Balanced problems
            need a support on which the marginals are feasible; unbalanced ones
            (SAOT's setting) simply transport less mass off-support.
        cost: ``'cosine'``, ``'sqeuclidean'`` or a callable ``(x_blk, y_blk) -> (n, m)``
            (block-average costs then use the callable on block means: approximate).
        projection: optional ``(D, D')`` matrix or callable applied to x and y first.
        block_size: source points per block.
        target_block_size: target points per block (larger blocks: fewer, larger
            products; smaller: a finer support).
        selection: ``'coverage'``, ``'truncation'``, ``'topk'`` or ``'all'``.
        coverage: for ``'coverage'``: estimated share of each target's mass that its kept
            source blocks carry, in (0, 1]. The default 0.75 (with 16-target blocks) kept
            13 % of the entries and changed 0.8 % of the labels at SAOT's working point
            (synthetic features; ``benchmarks/ot_cpu.md``); 0.7 kept 10-12 % and changed
            1.0-1.2 %. Other draws of the synthetic features need more: 24-49 % of the
            entries at 0.75 (0.1-3.5 % of the labels changed), 36-70 % at 0.95 (at most
            0.95 %; ``benchmarks/ot_cpu_block_seeds.md``).
        theta: for ``'truncation'``: threshold: a target keeps the source blocks whose estimated
            share of its mass is within a factor ``e^theta`` of its best block's. Larger
            keeps more pairs. The default 4 kept 45 % of the entries and changed 0.2-0.4 %
            of the labels at SAOT's working point (synthetic features); 2 kept 15 % and
            changed 2.3 % (``benchmarks/ot_cpu.md``).
        topk: for ``'topk'``: source blocks kept per target, by block-average cost.
        min_blocks: source blocks kept at least per target block.
        tree_dims: dimension of the PCA projection used to order points into blocks.
        ordering: ``'kmeans'`` (centroid order, cheap) or ``'tree'`` (PCA tree).
        num_iters, tol, check_every, omega, translation_invariant, warn: as in
            :func:`sinkhorn` (the same stopping rule: checking every 5 iterations stopped
            the working point at 30 iterations instead of 40, but at a loose ``tol``
            such as the labeller's 1e-2 it stops at a different iterate than the dense
            solver and moves the result away from it).
        storage_dtype: dtype of the stored support kernel (default fp32/fp64 as x).
        dropped_samples: targets on which the dropped mass is evaluated (their full cost
            rows: ``dropped_samples / M`` of the dense cost); 0 (default): not evaluated.
        exact_dropped_mass: evaluate it on every target (the dense cost, chunked).

    Returns:
        :class:`BlockSparseResult`.
    """
    check_feature_pair(x, y)
    check_projection(projection, x.shape[1], x.device)
    if x.dtype != y.dtype:  # as sinkhorn_online and nn_transfer: the wider of the two
        common = torch.promote_types(x.dtype, y.dtype)
        x, y = x.to(common), y.to(common)
    epsilon = check_epsilon(epsilon)
    rho_pair = parse_rho(rho)
    block_size = check_positive_int('block_size', block_size)
    target_block_size = check_positive_int('target_block_size', target_block_size)
    if selection not in SELECTIONS:
        raise ValueError(f'`selection` must be one of {SELECTIONS}, got {selection!r}.')
    if ordering not in ORDERINGS:
        raise ValueError(f'`ordering` must be one of {ORDERINGS}, got {ordering!r}.')
    if selection == 'coverage':  # read by that selection only (as theta and topk)
        coverage = check_real('coverage', coverage)
    if selection == 'coverage' and not 0.0 < coverage <= 1.0:
        raise ValueError(f'`coverage` must be in (0, 1], got {coverage}.')
    if selection == 'topk' and topk is None:
        raise ValueError("`topk` is required for selection='topk'.")
    if selection == 'topk':
        topk = check_positive_int('topk', topk)
    if selection == 'truncation':
        if not (isinstance(theta, numbers.Real) and not isinstance(theta, bool)
                and math.isfinite(theta) and theta >= 0):
            raise ValueError(f'`theta` must be a finite number >= 0, got {theta!r}.')
        theta = float(theta)
    min_blocks = check_positive_int('min_blocks', min_blocks)
    tree_dims = check_positive_int('tree_dims', tree_dims)
    dropped_samples = check_positive_int('dropped_samples', dropped_samples, minimum=0)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    storage_dtype = storage_dtype or dtype
    if storage_dtype not in FLOAT_DTYPES:
        raise ValueError(f'`storage_dtype` must be one of {FLOAT_DTYPES}, got {storage_dtype}.')
    num_src, num_tgt = x.shape[0], y.shape[0]
    a1 = marginal('a', a, None, num_src, 'N = x.shape[0]', x.device, DUAL_DTYPE)[0].detach()
    b1 = marginal('b', b, None, num_tgt, 'M = y.shape[0]', x.device, DUAL_DTYPE)[0].detach()
    b1 = balanced_masses(a1[None], b1[None], rho_pair, a, b)[0]
    cfg = make_config(epsilon, (rho_pair[1], rho_pair[0]), num_iters, tol, check_every, omega,
                      translation_invariant, None, None, warn, 'block_sparse_sinkhorn')
    timings = {}
    clock = time.perf_counter
    with torch.no_grad():
        t0 = clock()
        feats = _Features(x.detach(), y.detach(), cost, projection)
        basis = feats.pca_basis(tree_dims)
        z_src, z_tgt = feats.project(feats.x, basis), feats.project(feats.y, basis)
        with _loop.cpu_threads(x.device):  # many small ops: serial is faster on CPU
            src_blocks = _order_blocks(z_src, block_size, ordering)
            tgt_blocks = _order_blocks(z_tgt, target_block_size, ordering)
        yb = feats.blocked(feats.y, tgt_blocks)  # (J, bt, D) prepared targets, zero padding
        timings['order'] = clock() - t0
        t0 = clock()
        mass_src = _block_mass(a1, src_blocks)
        b_slots = _block_weights(b1, tgt_blocks).reshape(-1)
        coarse = feats.block_cost(yb, src_blocks, a1)  # (I, T * bt)
        with _loop.cpu_threads(x.device):
            keep = _select(coarse, mass_src, b_slots, selection, epsilon, rho_pair, theta,
                           coverage, topk, min_blocks, target_block_size)
        del coarse
        check_support_carries_balanced(keep, mass_src, _block_mass(b1, tgt_blocks), rho_pair)
        timings['select'] = clock() - t0
        t0 = clock()
        support = _Support(keep, src_blocks, tgt_blocks, num_src, num_tgt)
        support_cost = feats.support_cost(yb, support, keep, src_blocks, dtype)
        del yb
        timings['cost'] = clock() - t0
        t0 = clock()
        # The loop's rows are the target slots (the g-update is local to a target
        # block), its columns the sources plus one zero-mass dummy.
        log_rows = _padded_log(b1, support.tgt.reshape(-1))
        log_cols = torch.cat([torch.log(a1), a1.new_full((1,), -math.inf)]).unsqueeze(0)
        op = BlockKernelOperator(support_cost, support, log_rows, log_cols, epsilon,
                                 storage_dtype)
        out = _loop.run(op, lambda: BlockLogOperator(support_cost, support, log_rows, log_cols,
                                                     epsilon), log_rows, log_cols, cfg)
        del op
        timings['solve'] = clock() - t0
        g = support.unpad_targets(out.f[0], num_tgt).to(dtype)
        f = out.g[0, :num_src].to(dtype)
        a1, b1 = a1.to(dtype), b1.to(dtype)
        t0 = clock()
        dropped, dropped_worst = _dropped_mass(feats, keep, src_blocks, tgt_blocks, f, g, a1,
                                               b1, epsilon,
                                               None if exact_dropped_mass else dropped_samples)
        if exact_dropped_mass or dropped_samples:
            timings['dropped_mass'] = clock() - t0
    return BlockSparseResult(
        f=f, g=g, a=a1, b=b1, epsilon=epsilon, rho=rho_pair, num_iters=out.num_iters,
        converged=out.converged[0], marginal_error=out.marginal_error[0], method=out.method,
        support_fraction=support.num_entries / float(num_src * num_tgt),
        num_block_pairs=int(keep.sum()), dropped_mass=dropped, dropped_mass_worst=dropped_worst,
        timings=timings, _cost=support_cost, _support=support)


def estimate_memory(num_src: int, num_tgt: int, dim: int, support_fraction: float,
                    feature_bytes: int = 4, storage_bytes: int = 4) -> dict:
    """Peak memory estimate (bytes) of the dense and block-sparse solvers from features.

    Dense (:func:`cosine_cost` + :func:`sinkhorn`): the features, their unit-normalised
    copies, the fp32 cost and the stored kernel. Block-sparse: the features, a prepared
    copy of the targets, the fp32 support cost and the support kernel (padded by
    ``_BUCKET_WASTE``), the largest gathered target block (at most all targets) with its
    product against 128 sources, and the semi-coarse problem (source blocks x targets,
    cost and kernel, fp32).
    """
    feats = (num_src + num_tgt) * dim * feature_bytes
    copies = (num_src + num_tgt) * dim * 4
    dense = feats + copies + num_src * num_tgt * (4 + storage_bytes)
    support = (1.0 + _BUCKET_WASTE) * support_fraction * num_src * num_tgt
    gathered_rows = min(num_tgt, 2.0 * support_fraction * num_tgt)
    gathered = gathered_rows * (dim + 3 * 128) * 4  # rows, product and its tiles
    semi_coarse = 2 * 4 * num_tgt * math.ceil(num_src / 64)
    sparse = (feats + num_tgt * dim * 4 + support * (4 + storage_bytes) + gathered +
              semi_coarse)
    return {'dense_bytes': dense, 'block_sparse_bytes': sparse}
