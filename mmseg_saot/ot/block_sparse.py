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
robust: coverage 0.75 with 16-target blocks keeps 13 % of the entries and changes 0.84 %
of the labels (0.7: 10-12 %, 1.0-1.2 %). With the padded layout (8 width buckets, 10 %
padding) the whole labelling takes 0.8-1.16 s against 3.9-4.4 s dense on 2 CPU cores
(3.8-4.9x, ``benchmarks/ot_cpu_block.md``; before the block-order column moves, direct
cost rows and threaded loop: 1.3-1.6 s, 2.4-3.1x): phases order 0.15-0.19 s, select
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
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F

from . import _loop
from ._block_layout import _BUCKET_WASTE, _padded_log, _Support
from ._block_operators import BlockKernelOperator, BlockLogOperator
from ._block_order import _order_blocks
from ._block_select import _block_mass, _block_weights, _select
from ._matvec import matmul_fp32
from ._validation import (FLOAT_DTYPES, Rho, check_epsilon, check_feature_pair,
                          check_positive_int, marginal, parse_rho)
from .costs import Metric, sqeuclidean_cost
from .sinkhorn import DEFAULT_OMEGA, DUAL_DTYPE, make_config

SELECTIONS = ('coverage', 'truncation', 'topk', 'all')
ORDERINGS = ('kmeans', 'tree')
_PAD_COST = 1e4  # cost of padding slots: exp(-1e4 / eps) == 0, never a row maximum


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
            1.0-1.2 %.
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
    epsilon = check_epsilon(epsilon)
    rho_pair = parse_rho(rho)
    block_size = check_positive_int('block_size', block_size)
    target_block_size = check_positive_int('target_block_size', target_block_size)
    if selection not in SELECTIONS:
        raise ValueError(f'`selection` must be one of {SELECTIONS}, got {selection!r}.')
    if ordering not in ORDERINGS:
        raise ValueError(f'`ordering` must be one of {ORDERINGS}, got {ordering!r}.')
    if selection == 'coverage' and not 0.0 < coverage <= 1.0:
        raise ValueError(f'`coverage` must be in (0, 1], got {coverage}.')
    if selection == 'topk' and topk is None:
        raise ValueError("`topk` is required for selection='topk'.")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    storage_dtype = storage_dtype or dtype
    if storage_dtype not in FLOAT_DTYPES:
        raise ValueError(f'`storage_dtype` must be one of {FLOAT_DTYPES}, got {storage_dtype}.')
    num_src, num_tgt = x.shape[0], y.shape[0]
    a1 = marginal('a', a, None, num_src, 'N = x.shape[0]', x.device, DUAL_DTYPE)[0].detach()
    b1 = marginal('b', b, None, num_tgt, 'M = y.shape[0]', x.device, DUAL_DTYPE)[0].detach()
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


class _Features:
    """Features for one metric: projection, block means, support costs.

    No prepared copy of the sources is kept: for the cosine cost the inverse norms are
    stored and applied to each product (:math:`1 - \\langle x_i, y_j\\rangle / |x_i||y_j|`),
    and the rows of a target block's support are gathered when its costs are computed.
    """

    def __init__(self, x, y, metric, projection):
        if projection is not None:
            if callable(projection) and not isinstance(projection, torch.Tensor):
                x, y = projection(x), projection(y)
            else:
                x, y = x @ projection.to(x.dtype), y @ projection.to(y.dtype)
        if not (metric in ('cosine', 'sqeuclidean') or callable(metric)):
            raise ValueError(f"`cost` must be 'cosine', 'sqeuclidean' or a callable, got "
                             f'{metric!r}.')
        self.metric = metric
        self.x, self.y = x, y
        # Inverse norms of the sources (cosine), as F.normalize computes them.
        self.x_scale = (1.0 / x.norm(dim=1).clamp_min(1e-12) if metric == 'cosine' else None)

    def _prep(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(feats, dim=-1) if self.metric == 'cosine' else feats

    def _sources(self, idx: torch.Tensor) -> torch.Tensor:
        """Prepared source rows ``idx`` (all < N)."""
        rows = self.x.index_select(0, idx)
        return rows * self.x_scale[idx, None] if self.x_scale is not None else rows

    def pca_basis(self, dims: int):
        """``(mean, basis (D, dims))`` of the prepared features (randomised PCA, seeded)."""
        dims = min(dims, self.x.shape[1])
        gen = torch.Generator(device='cpu').manual_seed(0)
        n_s = min(self.x.shape[0], 2048)
        n_t = min(self.y.shape[0], 2048)
        sample = torch.cat([
            self.x[torch.randperm(self.x.shape[0], generator=gen)[:n_s].to(self.x.device)],
            self.y[torch.randperm(self.y.shape[0], generator=gen)[:n_t].to(self.y.device)]])
        sample = self._prep(sample).float()
        mean = sample.mean(0)
        devices = [sample.device] if sample.is_cuda else []
        with torch.random.fork_rng(devices=devices):  # deterministic, global RNG untouched
            torch.manual_seed(0)
            _, _, basis = torch.pca_lowrank(sample - mean, q=min(dims, *sample.shape),
                                            center=False, niter=2)
        return mean, basis

    def inverse_norms(self, feats: torch.Tensor) -> Optional[torch.Tensor]:
        """``(n,)`` inverse norms of ``feats`` as F.normalize applies them (cosine), else None."""
        if self.metric != 'cosine':
            return None
        if feats is self.x:
            return self.x_scale
        return 1.0 / feats.norm(dim=1).clamp_min(1e-12)

    def project(self, feats: torch.Tensor, basis) -> torch.Tensor:
        """``(n, dims)`` coordinates ``(prep(feats) - mean) @ basis``, fp32.

        Cosine: ``prep(x) = x / |x|`` is linear per row, so the raw rows are projected
        and the product scaled, ``(x @ V) / |x| - mean @ V``: no normalised copy of the
        features (34 ms against 97 ms for the sources at SAOT's working point).
        """
        mean, vecs = basis
        shift = mean @ vecs  # (dims,)
        scale = self.inverse_norms(feats)
        out = []
        for i0 in range(0, feats.shape[0], 8192):
            z = feats[i0:i0 + 8192].float() @ vecs  # (chunk, dims)
            if scale is not None:
                z.mul_(scale[i0:i0 + 8192, None].to(z.dtype))
            out.append(z.sub_(shift))
        return torch.cat(out)

    def blocked(self, feats: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        """``(num_blocks, block, D)`` prepared features in block order, zero rows as padding."""
        n = feats.shape[0]
        out = feats.new_zeros((blocks.numel(), feats.shape[1]))
        flat = blocks.reshape(-1)
        step = max(1, 8192 // blocks.shape[1]) * blocks.shape[1]
        for i0 in range(0, flat.shape[0], step):
            idx = flat[i0:i0 + step]
            valid = idx < n
            chunk = self._prep(feats[idx.clamp(max=n - 1)])
            out[i0:i0 + idx.shape[0]] = chunk * valid[:, None].to(chunk.dtype)
        return out.view(blocks.shape[0], blocks.shape[1], feats.shape[1])

    def block_cost(self, yb, src_blocks, a) -> torch.Tensor:
        """``(I, T * bt)`` cost between source blocks and target slots.

        Cosine: the mass-weighted average cost over the block, exact
        (:math:`1 - \\langle \\bar x_I, y_j\\rangle`); other metrics: cost to the block mean.
        """
        n = self.x.shape[0]
        wa = _block_weights(a, src_blocks).to(self.x.dtype)  # (I, bs), 0 for padding
        wa = wa / wa.sum(1, keepdim=True)
        idx = src_blocks.clamp(max=n - 1)  # padding: any row, weight 0
        if self.x_scale is not None:  # mean of the unit rows: weight w_i / |x_i|
            wa = wa * self.x_scale[idx]
        # x_bar_I = sum_i w_i x_i as one weighted embedding-bag sum: the member rows
        # are read in place, never gathered (8 ms against 88 ms at the working point).
        xm = F.embedding_bag(idx, self.x, mode='sum', per_sample_weights=wa)  # (I, D)
        ys = yb.reshape(-1, yb.shape[-1])
        if self.metric == 'cosine':
            return (1.0 - matmul_fp32(xm, ys.t())).to(a.dtype)
        if self.metric == 'sqeuclidean':
            return sqeuclidean_cost(xm, ys).to(a.dtype)
        return self.metric(xm, ys).to(a.dtype)

    def cost(self, xs: torch.Tensor, yt: torch.Tensor) -> torch.Tensor:
        """``(len(yt), len(xs))`` cost between prepared features, rows = targets."""
        if self.metric == 'cosine':
            return (1.0 - matmul_fp32(yt, xs.t())).clamp_(0.0, 2.0)
        if self.metric == 'sqeuclidean':
            return sqeuclidean_cost(yt, xs)
        return self.metric(xs, yt).t()

    def target_rows(self, yt: torch.Tensor) -> torch.Tensor:
        """``(len(yt), N)`` cost of prepared targets to every source, in source chunks."""
        n = self.x.shape[0]
        return torch.cat([self.cost(self._sources(torch.arange(i0, min(n, i0 + 8192),
                                                               device=self.x.device)), yt)
                          for i0 in range(0, n, 8192)], dim=1)

    def support_cost(self, yb, support, keep, src_blocks, dtype,
                     group: int = 2) -> torch.Tensor:
        """Cost in the padded layout of ``support`` (a flat buffer), ``group`` source blocks
        at a time: the target blocks that keep any of them are gathered, one product
        computed, and its rows of ``bs`` entries copied straight into the layout (rows of
        tiles that their target block does not keep go to scratch rows, cut off at the
        end; see :meth:`_Support.product_rows`). Padding columns get ``_PAD_COST``.

        Source-major because a source block is kept by ~23 target blocks at SAOT's working
        point: products of 128 sources x ~400 targets ran at near full GEMM speed, 0.45 s
        in all with 1.2x the support's entries, against 0.93 s (2.6x the entries) for
        products of 8 consecutive target blocks x the union of their source blocks.

        Returns:
            ``(support.size,)`` flat cost, ``dtype``.
        """
        n, bs, bt = self.x.shape[0], src_blocks.shape[1], support.bt
        js_all, counts, dest, scratch = support.product_rows(keep, group)
        out = torch.full((support.size + scratch * bs,), _PAD_COST, dtype=dtype,
                         device=yb.device)
        out_rows = out.view(-1, bs)  # widths and offsets are whole source blocks
        ys = yb.reshape(-1, yb.shape[-1])
        tile_rows = torch.arange(bt, device=yb.device)
        tgt_all = (js_all[:, None] * bt + tile_rows).reshape(-1)  # target slots, product order
        # Whole groups: a last, partial group gets padding blocks (their tiles, never
        # kept, go to scratch rows), so every product has group * bs columns.
        extra = -src_blocks.shape[0] % group
        src_blocks = torch.cat([src_blocks, src_blocks.new_full((extra, bs), n)])
        padded_blocks = set((src_blocks[:, -1] >= n).nonzero()[:, 0].tolist())
        one = torch.ones((), dtype=ys.dtype, device=ys.device)
        fast = self.metric == 'cosine' and ys.dtype in (torch.float32, torch.float64)
        p0 = d0 = 0
        for q, count in enumerate(counts):
            i0 = q * group
            src = src_blocks[i0:i0 + group].reshape(-1)
            src_c = src.clamp(max=n - 1)
            yt = ys.index_select(0, tgt_all[p0 * bt:(p0 + count) * bt])
            if fast:  # 1 - <y_j, x_i / |x_i|>: unit source rows, one GEMM with its offset
                xs = self.x.index_select(0, src_c).mul_(self.x_scale[src_c, None])
                full = torch.addmm(one, yt, xs.t(), alpha=-1.0).clamp_(0.0, 2.0)
            elif self.metric == 'cosine':  # half features: fp32 product, then scale
                prod = matmul_fp32(yt, self.x.index_select(0, src_c).t())
                full = (1.0 - prod * self.x_scale[src_c][None, :]).clamp_(0.0, 2.0)
            else:
                full = self.cost(self.x.index_select(0, src_c), yt)
            if any(i in padded_blocks for i in range(i0, i0 + group)):
                full[:, src >= n] = _PAD_COST
            rows = count * bt * group
            # (target block, tile row, source block) rows of bs entries -> layout rows
            out_rows.index_copy_(0, dest[d0:d0 + rows], full.reshape(-1, bs).to(dtype))
            p0, d0 = p0 + count, d0 + rows
        return out[:support.size]


def _dropped_mass(feats, keep, src_blocks, tgt_blocks, f, g, a, b, epsilon, samples):
    """Mass on dropped pairs relative to kept mass, for all or ``samples`` random targets.

    Evaluates full cost rows of the chosen targets against all sources (``samples / M``
    of the dense cost) under the final potentials. Returns ``(ratio, worst)``: the
    ratio of dropped to kept mass over the chosen targets, and the largest ratio of
    a single target.
    """
    num_src, num_tgt = f.shape[0], g.shape[0]
    if bool(keep.all()):
        return 0.0, 0.0
    if samples is not None and samples <= 0:
        return math.nan, math.nan
    src_id = _owner(src_blocks, num_src)
    tgt_id = _owner(tgt_blocks, num_tgt)
    if samples is None or samples >= num_tgt:
        targets = torch.arange(num_tgt, device=f.device)
    else:
        gen = torch.Generator(device='cpu').manual_seed(0)
        targets = torch.randperm(num_tgt, generator=gen)[:samples].to(f.device)
    log_a, log_b = torch.log(a), torch.log(b)
    dropped_total = kept_total = 0.0
    worst = 0.0
    step = max(1, (1 << 24) // max(1, num_src))
    for t0 in range(0, targets.shape[0], step):
        tj = targets[t0:t0 + step]
        cost = feats.target_rows(feats._prep(feats.y[tj])).to(f.dtype)  # (t, N)
        mass = torch.exp(log_b[tj, None] + log_a[None, :] + (g[tj, None] + f[None, :] - cost) /
                         epsilon)
        kept = keep[src_id[None, :], tgt_id[tj][:, None]]
        dropped_j = torch.where(kept, torch.zeros_like(mass), mass).sum(1)
        kept_j = torch.where(kept, mass, torch.zeros_like(mass)).sum(1)
        dropped_total += float(dropped_j.sum())
        kept_total += float(kept_j.sum())
        worst = max(worst, float((dropped_j / kept_j.clamp_min(1e-300)).max()))
    return dropped_total / max(kept_total, 1e-300), worst


def _owner(blocks, n):
    """``(n,)`` block index of every real point."""
    owner = torch.empty(n, dtype=torch.long, device=blocks.device)
    ids = torch.arange(blocks.shape[0], device=blocks.device).repeat_interleave(blocks.shape[1])
    flat = blocks.reshape(-1)
    owner[flat[flat < n]] = ids[flat < n]
    return owner
