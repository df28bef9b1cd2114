"""The result of a Sinkhorn solve: potentials, diagnostics, and a lazily built plan."""
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Tuple

import torch

from .costs import rows_per_block


@dataclass
class SinkhornResult:
    """Solution of an entropic (unbalanced) OT problem, held as dual potentials.

    The plan is never stored: :math:`P_{ij} = a_i b_j e^{(f_i + g_j - C_{ij})/\\varepsilon}`
    is rebuilt from the potentials and the cost on demand, whole (:attr:`plan`, for
    problems small enough to hold one) or by row blocks (:meth:`plan_blocks`).

    Attributes:
        f: source potential, ``(N,)`` or ``(B, N)``, in cost units.
        g: target potential, ``(M,)`` or ``(B, M)``, in cost units.
        a: source weights used, same shape as ``f``.
        b: target weights used, same shape as ``g``.
        epsilon: entropic regularisation, in cost units.
        rho: ``(rho_a, rho_b)`` marginal penalties; ``inf`` is a hard constraint.
        num_iters: iterations done (one iteration = one update of f and one of g).
        converged: bool tensor, ``()`` or ``(B,)``: marginal error reached ``tol``.
        marginal_error: ``()`` or ``(B,)``: relative L1 violation of the optimality
            conditions on the marginals, ``|P1 - a e^{-f/rho_a}|_1 / |a|_1 +
            |P^T 1 - b e^{-g/rho_b}|_1 / |b|_1`` (``P1 = a`` and ``P^T 1 = b`` when balanced),
            measured by the solver on its stored kernel with its fp64 potentials. The
            plan rebuilt here (:attr:`plan`, :meth:`marginals`) from the potentials in
            the result's dtype and the cost as given misses by more: ~5e-7 for fp32
            potentials, ~5e-5 for fp16 and ~5e-4 for bf16 ``storage_dtype`` at eps 0.05
            (their rounding of the kernel), whatever ``tol`` was reached.
        method: ``'kernel'``, ``'log'`` or ``'kernel+log'`` (kernel with log-domain
            rescue windows), the softmin evaluation actually used.
    """

    f: torch.Tensor
    g: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    epsilon: float
    rho: Tuple[float, float]
    num_iters: int
    converged: torch.Tensor
    marginal_error: torch.Tensor
    method: str
    extras: dict = field(default_factory=dict, repr=False)
    _source: Any = field(default=None, repr=False)
    _batched: bool = field(default=False, repr=False)

    def _b3(self, t: torch.Tensor) -> torch.Tensor:
        return t if self._batched else t.unsqueeze(0)

    def _unb(self, t: torch.Tensor) -> torch.Tensor:
        return t if self._batched else t.squeeze(0)

    @property
    def shape(self) -> Tuple[int, int]:
        """``(N, M)``."""
        return (self.f.shape[-1], self.g.shape[-1])

    def plan_blocks(self, block_rows: Optional[int] = None
                    ) -> Iterator[Tuple[int, int, torch.Tensor]]:
        """Yield ``(i0, i1, P[..., i0:i1, :])`` row blocks of the plan (``(B, n, M)``).

        Differentiable w.r.t. the cost when the solve was.
        """
        if self._source is None:
            raise RuntimeError('this result holds no cost; rebuild it with the solver.')
        num_rows, num_cols = self.shape
        f, g = self._b3(self.f), self._b3(self.g)
        log_a, log_b = torch.log(self._b3(self.a)), torch.log(self._b3(self.b))
        step = block_rows or rows_per_block(num_cols, 1 << 26, f.shape[0])
        for i0 in range(0, num_rows, step):
            i1 = min(i0 + step, num_rows)
            cost = self._source.rows(i0, i1)
            expo = (log_a[:, i0:i1, None] + log_b[:, None, :] +
                    (f[:, i0:i1, None] + g[:, None, :] - cost) / self.epsilon)
            yield i0, i1, torch.exp(expo)

    @property
    def plan(self) -> torch.Tensor:
        """Dense plan ``(N, M)`` or ``(B, N, M)``, built from potentials and cost."""
        return self._unb(torch.cat([blk for _, _, blk in self.plan_blocks()], dim=1))

    def marginals(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(P 1, P^T 1)``: mass sent by each source and received by each target."""
        rows, cols = [], 0
        for _, _, blk in self.plan_blocks():
            rows.append(blk.sum(-1))
            cols = cols + blk.sum(-2)
        return self._unb(torch.cat(rows, dim=1)), self._unb(cols)

    def objective(self) -> torch.Tensor:
        """Primal objective ``<P,C> + eps KL(P|a b^T) + rho_a KL(P1|a) + rho_b KL(P^T1|b)``.

        With :math:`\\mathrm{KL}(p|q) = \\sum p\\log(p/q) - p + q`. Uses
        :math:`\\langle P, C\\rangle + \\varepsilon\\mathrm{KL}(P|a\\otimes b) =
        \\langle f, P\\mathbf 1\\rangle + \\langle g, P^\\top\\mathbf 1\\rangle
        - \\varepsilon(m(P) - m(a)m(b))`, exact for plans of this form. The balanced
        terms are omitted (zero at convergence). Differentiable; by the envelope
        theorem its gradient w.r.t. the cost is the plan.
        """
        mu, nu = self.marginals()
        value = ((self.f * mu).sum(-1) + (self.g * nu).sum(-1) -
                 self.epsilon * (mu.sum(-1) - self.a.sum(-1) * self.b.sum(-1)))
        for rho, p, q in ((self.rho[0], mu, self.a), (self.rho[1], nu, self.b)):
            if not math.isinf(rho):
                value = value + rho * _kl(p, q)
        return value


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Generalised KL divergence along the last axis, with 0 log 0 = 0.

    The quotient is taken where ``p > 0`` only: ``0 / 0`` in the branch ``torch.where``
    drops would still send NaN into the gradient (the unselected branch gets a zero
    gradient, times ``1 / q = inf``), e.g. for a source of zero weight.
    """
    positive = p > 0
    ratio = torch.where(positive, p / torch.where(positive, q, torch.ones_like(q)),
                        torch.ones_like(p))
    return (torch.xlogy(p, ratio) - p + q).sum(-1)
