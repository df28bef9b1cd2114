"""Marginal errors: how far potentials are from the first-order optimality conditions.

The relative L1 violation of :math:`P\\mathbf 1 = a e^{-f/\\rho_a}` and
:math:`P^\\top \\mathbf 1 = b e^{-g/\\rho_b}` (``a``, ``b`` when balanced), measured
inside the loop from the softmins it computes anyway, and at the end for the result.
"""
import math
from typing import Tuple

import torch

from ._operators import Operator


def row_violation(f, smin, log_w, eps, rho):
    """Sum over the last axis of ``|w e^{(f - smin)/eps} - w e^{-f/rho}|``.

    ``w e^{(f - smin)/eps}`` is the marginal of the plan of the current potentials
    and ``w e^{-f/rho}`` (``w`` when balanced) the one that optimality requires.
    """
    marg = torch.exp(log_w + (f - smin) / eps)
    target = torch.exp(log_w if math.isinf(rho) else log_w - f / rho)
    gap = (marg - target).abs()
    # Zero-mass points (padding) do not count, whatever their potentials.
    return torch.where(torch.isfinite(log_w), gap, torch.zeros_like(gap)).sum(-1)


def relative_violation(f_or_g, smin, log_w, w_mass, eps, rho):
    """Relative L1 gap ``(B,)`` between the plan's marginal and its optimality target."""
    err = row_violation(f_or_g, smin, log_w, eps, rho) / w_mass
    return torch.nan_to_num(err, nan=math.inf)


def marginal_error(op, f, g, log_a, log_b, eps, rho_a, rho_b) -> torch.Tensor:
    """Exact relative L1 marginal error of potentials ``(f, g)`` (two softmins)."""
    s = op.softmin_rows(g)
    t = op.softmin_cols(f)
    return (relative_violation(f, s, log_a, log_a.exp().sum(-1), eps, rho_a) +
            relative_violation(g, t, log_b, log_b.exp().sum(-1), eps, rho_b))


def final_error(op, exact, f, g, log_a, log_b, epsilon: float, rho: Tuple[float, float],
                failures: int) -> torch.Tensor:
    """Marginal error ``(B,)`` to report for the returned potentials.

    Measured with ``op``: the loop refreshed it at its last iteration, so a stored kernel
    is up to date and its flushed entries carry at most ``e^-17`` of the plan
    (``_refresh.absorb_or_rebuild``). Measured again with ``exact`` (the log-domain
    operator) where the kernel failed during the solve (a log-domain rescue) or the
    value is not finite, so that a failed solve reports the error of its plan. Solves
    without a rescue cost nothing more (fixed-iteration benchmarks included).

    Args:
        op: the operator the loop ended with.
        exact: a log-domain operator, or a callable that builds one, or None.
        f: ``(B, N)`` and g: ``(B, M)`` potentials.
        log_a, log_b: ``(B, N)``, ``(B, M)`` log weights.
        epsilon: the final epsilon; rho: ``(rho_a, rho_b)``.
        failures: kernel failures (log-domain rescues) during the solve.
    """
    args = (f, g, log_a, log_b, epsilon, *rho)
    err = marginal_error(op, *args)
    trusted = op.kind == 'log' or (failures == 0 and math.isfinite(float(err.max())))
    if trusted or exact is None:
        return err
    exact = exact if isinstance(exact, Operator) else exact()
    exact.set_epsilon(epsilon, f, g)
    return marginal_error(exact, *args)
