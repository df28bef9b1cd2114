"""Ground costs between feature sets, and row-block access to a cost.

Two metrics are built in:

* ``'cosine'``: :math:`C_{ij} = 1 - \\langle x_i, y_j\\rangle / (\\|x_i\\|\\|y_j\\|)`,
  in [0, 2]. On unit vectors it equals :math:`\\|x_i - y_j\\|^2 / 2`, geomloss's
  ``p=2`` cost, so geomloss ``blur = sqrt(epsilon)`` and ``reach = sqrt(rho)``
  describe the same problem.
* ``'sqeuclidean'``: :math:`C_{ij} = \\|x_i - y_j\\|^2 / 2` (geomloss's convention).

Any callable ``metric(x_block, y_block) -> (n, m)`` cost works too (e.g. a learned
Mahalanobis metric); an optional linear ``projection`` (D, D') is applied to both
feature sets first.

The solvers never need the whole ``N x M`` cost at once: they read it through a
*cost source* that returns row blocks (:class:`DenseCost` wraps a stored matrix,
:class:`FeatureCost` recomputes blocks from features).
"""
import math
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ._matvec import matmul_fp32

Metric = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def _check_same_dim(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f'`x` and `y` must share their feature dimension, got shapes '
                         f'{tuple(x.shape)} and {tuple(y.shape)}.')


def cosine_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the ``(..., N, M)`` cosine cost ``1 - cos(x_i, y_j)`` in [0, 2].

    ``x``: ``(N, D)`` or batched ``(B, N, D)``; ``y``: ``(M, D)`` or ``(B, M, D)``. The
    cost is fp32 for half-precision features (products accumulated in fp32), else their
    dtype.
    """
    _check_same_dim(x, y)
    x = F.normalize(x, dim=-1)
    y = F.normalize(y, dim=-1)
    sim = matmul_fp32(x, y.transpose(-1, -2))  # fp32 from half features, batched too
    return (1.0 - sim).clamp_(0.0, 2.0)


def sqeuclidean_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return the ``(..., N, M)`` cost ``||x_i - y_j||^2 / 2`` (geomloss ``p=2``), fp32
    or fp64; batched as :func:`cosine_cost`.

    Both sets are first moved by one common point, the mean of their two means
    (distances do not change): the expansion ``|x|^2 + |y|^2 - 2 x.y`` of points far
    from the origin cancels catastrophically (fp32 points at 1000 lost ~10 % of costs
    of ~15). The centred points stay in fp32 (fp64 for fp64 inputs), half features
    included: rounding them to half again would move them (errors ~1e-2 on unit-scale
    costs of fp16 features).
    """
    _check_same_dim(x, y)
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x_c, y_c = _centred(x.to(dtype), y.to(dtype))
    xx = (x_c**2).sum(-1, keepdim=True)
    yy = (y_c**2).sum(-1).unsqueeze(-2)
    return (0.5 * (xx + yy) - x_c @ y_c.transpose(-1, -2)).clamp_(min=0.0)


def _centred(x: torch.Tensor, y: torch.Tensor):
    """``x`` and ``y`` less the midpoint of their means (of one of them if the other has
    no point)."""
    means = [t.mean(-2, keepdim=True) for t in (x, y) if t.shape[-2] > 0]
    if not means:
        return x, y
    centre = sum(means) / len(means)
    return x - centre, y - centre


class FeatureCost:
    """Cost source that recomputes cost blocks from two feature sets.

    Args:
        x: ``(N, D)`` source features.
        y: ``(M, D)`` target features.
        metric: ``'cosine'``, ``'sqeuclidean'`` or a callable ``(x_blk, y_blk) -> (n, m)``.
        projection: optional ``(D, D')`` matrix or callable applied to both feature sets
            before the metric (a learned linear metric).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, metric: Metric = 'cosine',
                 projection: Optional[Union[torch.Tensor, Callable]] = None):
        if projection is not None:
            if callable(projection) and not isinstance(projection, torch.Tensor):
                x, y = projection(x), projection(y)
            else:
                x, y = x @ projection.to(x.dtype), y @ projection.to(y.dtype)
        if metric == 'cosine':
            x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
            self._block = _unit_cosine_block
        elif metric == 'sqeuclidean':
            self._block = sqeuclidean_cost
        elif callable(metric):
            self._block = metric
        else:
            raise ValueError(f"`cost` must be 'cosine', 'sqeuclidean' or a callable, got "
                             f'{metric!r}.')
        self.x, self.y = x, y
        self.batch = 1
        self.shape = (x.shape[0], y.shape[0])
        self.device = x.device
        self.dtype = torch.float64 if x.dtype == torch.float64 else torch.float32

    def block(self, i0: int, i1: int, j0: int = 0, j1: Optional[int] = None) -> torch.Tensor:
        """Return the ``(i1 - i0, j1 - j0)`` cost block in the compute dtype."""
        y = self.y if (j0 == 0 and j1 is None) else self.y[j0:j1]
        out = self._block(self.x[i0:i1], y)
        if out.shape != (i1 - i0, y.shape[0]):
            raise ValueError(f'the cost callable returned shape {tuple(out.shape)} for blocks '
                             f'of {i1 - i0} and {y.shape[0]} points.')
        return out.to(self.dtype)

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        """Return rows ``i0:i1`` as a ``(1, i1 - i0, M)`` tensor (batch of one)."""
        return self.block(i0, i1).unsqueeze(0)

    def first_non_finite(self) -> Optional[Tuple[int, int]]:
        """``(row, col)`` of the first NaN or -inf cost entry, or None: one pass over the
        cost in row blocks, for an error message after a failed solve (+inf is a
        forbidden pair, which the solvers handle; see :meth:`first_forbidden_line`)."""
        step = rows_per_block(self.shape[1])
        for i0 in range(0, self.shape[0], step):
            block = self.block(i0, min(i0 + step, self.shape[0]))
            bad = torch.isnan(block) | (block == -math.inf)
            if bool(bad.any()):
                row, col = bad.nonzero()[0].tolist()
                return i0 + row, col
        return None

    def first_forbidden_line(self) -> Optional[Tuple[str, int]]:
        """``('row', i)`` or ``('column', j)``: the first row or column of the cost that
        is +inf everywhere (a point that may go nowhere, whose potential is infinite),
        or None; one pass over the cost in row blocks."""
        step = rows_per_block(self.shape[1])
        columns = None
        for i0 in range(0, self.shape[0], step):
            forbidden = self.block(i0, min(i0 + step, self.shape[0])) == math.inf
            rows = forbidden.all(1)
            if bool(rows.any()):
                return 'row', i0 + int(rows.nonzero()[0])
            columns = forbidden.all(0) if columns is None else columns & forbidden.all(0)
        if columns is not None and bool(columns.any()):
            return 'column', int(columns.nonzero()[0])
        return None


class DenseCost:
    """Cost source over a stored ``(B, N, M)`` cost matrix (any float dtype)."""

    def __init__(self, cost: torch.Tensor):
        self.cost = cost if cost.dim() == 3 else cost.unsqueeze(0)
        self.batch = self.cost.shape[0]
        self.shape = tuple(self.cost.shape[1:])
        self.device = cost.device
        self.dtype = torch.float64 if cost.dtype == torch.float64 else torch.float32

    def rows(self, i0: int, i1: int) -> torch.Tensor:
        """Return rows ``i0:i1`` as ``(B, i1 - i0, M)`` in the compute dtype."""
        return self.cost[:, i0:i1].to(self.dtype)


def _unit_cosine_block(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cosine cost of already unit-normalised features."""
    return (1.0 - matmul_fp32(x, y.t())).clamp_(0.0, 2.0)


def rows_per_block(num_cols: int, budget_bytes: int = 1 << 26, batch: int = 1) -> int:
    """Rows of an ``(rows, num_cols)`` fp32 block that fit ``budget_bytes`` (>= 1)."""
    return max(1, budget_bytes // max(1, 4 * num_cols * batch))
