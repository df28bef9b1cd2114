"""Online (matrix-free) Sinkhorn: features plus a metric, never an N x M matrix."""
import math
import warnings
from typing import Callable, Optional, Union

import torch

from . import _loop
from ._operators import LogOperator
from ._validation import (Rho, balanced_masses, check_epsilon, check_feature_pair,
                          check_positive_int, check_projection, initial_potential, marginal,
                          parse_rho)
from .costs import FeatureCost, Metric
from .result import SinkhornResult
from .sinkhorn import DEFAULT_OMEGA, DUAL_DTYPE, build_result, make_config


class OnlineOperator(LogOperator):
    """:class:`LogOperator` over a :class:`FeatureCost`: cost blocks recomputed per pass."""

    kind = 'online'


def sinkhorn_online(x: torch.Tensor,
                    y: torch.Tensor,
                    a: Optional[torch.Tensor] = None,
                    b: Optional[torch.Tensor] = None,
                    *,
                    epsilon: float,
                    rho: Rho = math.inf,
                    cost: Metric = 'cosine',
                    projection: Optional[Union[torch.Tensor, Callable]] = None,
                    chunk_size: Optional[int] = None,
                    num_iters: int = 1000,
                    tol: float = 1e-6,
                    check_every: int = 10,
                    omega: Union[str, float] = DEFAULT_OMEGA,
                    translation_invariant: bool = True,
                    epsilon_scaling: Optional[float] = None,
                    epsilon_start: Optional[float] = None,
                    f_init: Optional[torch.Tensor] = None,
                    g_init: Optional[torch.Tensor] = None,
                    warn: bool = True) -> SinkhornResult:
    """Solve the problem of :func:`sinkhorn` from features, without storing the cost.

    Same objective, potentials and result as ``sinkhorn(cost(x, y), a, b, ...)``:

    .. math::
        \\min_{P \\ge 0}\\; \\langle P, C\\rangle + \\varepsilon\\,\\mathrm{KL}(P | a b^\\top)
        + \\rho_a \\mathrm{KL}(P\\mathbf 1 | a) + \\rho_b \\mathrm{KL}(P^\\top \\mathbf 1 | b),
        \\qquad C_{ij} = c(W x_i, W y_j),

    but every iteration recomputes the cost in ``chunk_size x M`` blocks and reduces
    them with a log-sum-exp (the KeOps / geomloss "online" scheme), so memory is
    ``O(chunk_size * M + (N + M) D)`` whatever N is. The price is one ``N x M x D``
    product per iteration (one per iteration, not two: see :class:`OnlineOperator`),
    so this path pays off when N x M does not fit, or on a GPU where the product is
    cheap (bf16/fp16 features are multiplied with fp32 output).

    Gradients do not flow through this solver (it runs under ``no_grad``); to learn a
    metric, use :func:`sinkhorn` on a dense cost of a training-size problem, whose
    implicit gradient is exact.

    Args:
        x: ``(N, D)`` source features.
        y: ``(M, D)`` target features.
        a, b: weights as in :func:`sinkhorn` (default uniform).
        epsilon: entropic regularisation, in cost units.
        rho: marginal penalty (number or pair), ``inf`` = balanced (then ``a`` and ``b``
            must have equal total masses, else ``ValueError``, as in :func:`sinkhorn`).
        cost: ``'cosine'`` (``1 - cos``, in [0, 2]), ``'sqeuclidean'`` (``|x - y|^2 / 2``)
            or a callable ``(x_block (n, D'), y (M, D')) -> (n, M)`` cost.
        projection: optional ``(D, D')`` matrix or callable applied to x and y first.
        chunk_size: rows per block; default: blocks of about 64 MB.
        num_iters, tol, check_every, omega, translation_invariant, epsilon_scaling,
        epsilon_start, f_init, g_init, warn: as in :func:`sinkhorn`.

    Returns:
        :class:`SinkhornResult`; its ``plan`` and ``plan_blocks`` recompute the cost.
    """
    check_feature_pair(x, y)
    check_projection(projection, x.shape[1], x.device)
    epsilon = check_epsilon(epsilon)
    rho_pair = parse_rho(rho)
    trained = (list(projection.parameters()) if isinstance(projection, torch.nn.Module)
               else [projection])
    if torch.is_grad_enabled() and any(
            isinstance(t, torch.Tensor) and t.requires_grad for t in [x, y] + trained):
        warnings.warn('sinkhorn_online does not propagate gradients; use sinkhorn() on a '
                      'dense cost for the learning path.', stacklevel=2)
    common = torch.promote_types(x.dtype, y.dtype)  # the wider of the two, as block-sparse
    with torch.no_grad():
        source = FeatureCost(x.detach().to(common), y.detach().to(common), cost, projection)
    num_rows, num_cols = source.shape
    dual = DUAL_DTYPE
    a2 = marginal('a', a, None, num_rows, 'N = x.shape[0]', x.device, dual).detach()
    b2 = marginal('b', b, None, num_cols, 'M = y.shape[0]', x.device, dual).detach()
    b2 = balanced_masses(a2, b2, rho_pair, a, b)
    f0 = initial_potential('f_init', f_init, a2, batched=False)
    g0 = initial_potential('g_init', g_init, b2, batched=False)
    cfg = make_config(epsilon, rho_pair, num_iters, tol, check_every, omega,
                      translation_invariant, epsilon_scaling, epsilon_start, warn,
                      'sinkhorn_online')
    if chunk_size is not None:
        chunk_size = check_positive_int('chunk_size', chunk_size)
    log_a, log_b = torch.log(a2), torch.log(b2)
    block_bytes = (1 << 26) if chunk_size is None else 4 * num_cols * int(chunk_size)
    with torch.no_grad():
        op = OnlineOperator(source, log_a, log_b, epsilon, block_bytes=block_bytes)
        try:
            out = _loop.run(op, None, log_a, log_b, cfg, f0, g0,
                            cost_range=lambda: _block_range(source))
        except FloatingPointError:
            _raise_if_cost_not_finite(source, cost, projection)
            raise
    f, g, a2, b2 = (t.to(source.dtype) for t in (out.f, out.g, a2, b2))
    return build_result(f, g, a2, b2, epsilon, rho_pair, out, source, False)


def _block_range(source) -> float:
    """max - min of the finite entries of the first 1024 cost rows: the default start
    of epsilon scaling (+inf entries are forbidden pairs, not the cost's scale)."""
    block = source.rows(0, min(source.shape[0], 1024))
    finite = block[torch.isfinite(block)]
    return float(finite.amax() - finite.amin()) if finite.numel() else 0.0


def _raise_if_cost_not_finite(source: FeatureCost, cost, projection) -> None:
    """After non-finite potentials: name a NaN or -inf cost entry and what made it, or
    a row or column that is +inf everywhere."""
    where = source.first_non_finite()
    if where is None:
        line = source.first_forbidden_line()
        if line is not None:
            kind, index = line
            side = 'x[' if kind == 'row' else 'y['
            raise ValueError(
                f'sinkhorn_online: {kind} {index} of the cost is +inf everywhere: {side}'
                f'{index}] may go nowhere, and its potential is infinite. +inf forbids '
                'single pairs; leave that point out of x or y, or give it a finite cost '
                'to at least one point.') from None
        return
    culprit = ('the `projection` callable (it returned non-finite features)'
               if callable(projection) and not bool(
                   torch.isfinite(source.x).all() & torch.isfinite(source.y).all()) else
               '`cost`' if callable(cost) else f'the {cost!r} cost of these features')
    raise ValueError(f'sinkhorn_online: the cost is not finite at (row {where[0]}, col '
                     f'{where[1]}): NaN or -inf from {culprit}. Every cost entry must be '
                     f'finite (or +inf for a forbidden pair, with a finite entry left in '
                     f'each row and column).') from None
