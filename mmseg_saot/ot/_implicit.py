"""Implicit differentiation of the optimal Sinkhorn potentials with respect to the cost.

At convergence the potentials :math:`z = (f, g)` solve :math:`\\nabla_z D(z; C) = 0`,
with :math:`D` the dual of ``_loop.py``. The implicit function theorem gives, for an
upstream gradient :math:`(\\bar f, \\bar g)`,

.. math::
    \\bar C = P \\odot (w_f \\oplus w_g), \\qquad
    \\begin{pmatrix} \\mathrm{diag}(\\mu\\,\\kappa_a) & P \\\\
                    P^\\top & \\mathrm{diag}(\\nu\\,\\kappa_b)\\end{pmatrix}
    \\begin{pmatrix} w_f \\\\ w_g \\end{pmatrix} =
    \\begin{pmatrix} \\bar f \\\\ \\bar g \\end{pmatrix},

where :math:`\\mu = P\\mathbf 1`, :math:`\\nu = P^\\top\\mathbf 1` and
:math:`\\kappa = 1 + \\varepsilon/\\rho` (1 for a balanced side). Everything downstream of
the potentials (the plan, transferred labels, the transport cost) is differentiated
by ordinary autograd, so the exact gradient of any such quantity follows from one
linear solve per backward pass.

The system is solved on its Schur complement for the smaller side (size
:math:`\\min(N, M)`): densely (Cholesky-free ``linalg.solve``) when that side is small,
otherwise matrix-free by Jacobi-preconditioned conjugate gradients, each step costing
two products with P. In the balanced case the matrix has the null vector
:math:`(\\mathbf 1, -\\mathbf 1)` (the potentials' translation gauge); the right-hand side is
projected onto its orthogonal complement, which is exact for every gauge-invariant
loss (anything computed from the plan).

Why implicit rather than unrolled: unrolling keeps one N x M activation per
half-step (100 iterations at SAOT's working point would need ~24 GB), while the
implicit gradient needs only the plan at the solution, and it is the exact
derivative of the converged solution rather than of a truncated iteration.
It assumes convergence: stop with a small ``tol``. Far from convergence at tiny
epsilon the plan's support (entries above the smallest positive number of its dtype)
can split into disconnected blocks; each block then adds a gauge to the system, which
becomes singular, and the backward pass raises :class:`SingularSystemError` naming the
solve's epsilon, iterations and marginal error.
"""
import math
import warnings

import torch

DENSE_SCHUR_MAX = 1024


class SingularSystemError(FloatingPointError):
    """The implicit-gradient system is singular at the given potentials."""


class ImplicitPotentials(torch.autograd.Function):
    """``(cost, f, g) -> (f, g)``, whose backward applies the implicit function theorem.

    ``solve_info`` (a string such as ``'epsilon=0.001, num_iters=10, marginal error
    3.4e-01'``) describes the solve in the error raised for a singular system.
    """

    @staticmethod
    def forward(ctx, cost, f, g, log_a, log_b, epsilon, rho_a, rho_b, solve_info=''):
        ctx.save_for_backward(cost, f, g, log_a, log_b)
        ctx.params = (epsilon, rho_a, rho_b)
        ctx.solve_info = solve_info
        return f.clone(), g.clone()

    @staticmethod
    def backward(ctx, grad_f, grad_g):
        cost, f, g, log_a, log_b = ctx.saved_tensors
        epsilon, rho_a, rho_b = ctx.params
        if grad_f is None:
            grad_f = torch.zeros_like(f)
        if grad_g is None:
            grad_g = torch.zeros_like(g)
        try:
            grad = torch.stack([
                cost_gradient(cost[i].to(f.dtype), f[i], g[i], log_a[i], log_b[i], epsilon,
                              rho_a, rho_b, grad_f[i], grad_g[i]) for i in range(cost.shape[0])
            ])
        except SingularSystemError as exc:
            raise SingularSystemError(
                f'implicit Sinkhorn gradient: {exc} at the returned potentials '
                f'({ctx.solve_info}): the support of the plan splits into disconnected blocks. '
                f'The gradient assumes a converged solve: increase `num_iters` (or use '
                f'`epsilon_scaling`) until the marginal error is small, or increase '
                f'`epsilon`.') from None
        return grad.to(cost.dtype), None, None, None, None, None, None, None, None


def cost_gradient(cost, f, g, log_a, log_b, epsilon, rho_a, rho_b, grad_f, grad_g):
    """Vector-Jacobian product of ``C -> (f*, g*)`` for one ``(N, M)`` problem.

    Points of zero weight (``log_a`` or ``log_b`` is -inf) take no part in the problem:
    their rows or columns of the plan are 0 whatever the cost, and their potentials are
    free. The system is solved over the points of positive weight only, and the
    gradient is 0 on the others (each would otherwise add a singular row).
    """
    rows, cols = torch.isfinite(log_a), torch.isfinite(log_b)
    if bool(rows.all()) and bool(cols.all()):
        return _positive_weight_gradient(cost, f, g, log_a, log_b, epsilon, rho_a, rho_b,
                                         grad_f, grad_g)
    grad = torch.zeros_like(cost, dtype=f.dtype)
    if bool(rows.any()) and bool(cols.any()):
        grad[rows[:, None] & cols[None, :]] = _positive_weight_gradient(
            cost[rows][:, cols], f[rows], g[cols], log_a[rows], log_b[cols], epsilon, rho_a,
            rho_b, grad_f[rows], grad_g[cols]).reshape(-1)
    return grad


def _positive_weight_gradient(cost, f, g, log_a, log_b, epsilon, rho_a, rho_b, grad_f,
                              grad_g):
    plan = torch.exp(log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - cost) / epsilon)
    kappa_a = 1.0 if math.isinf(rho_a) else 1.0 + epsilon / rho_a
    kappa_b = 1.0 if math.isinf(rho_b) else 1.0 + epsilon / rho_b
    balanced = math.isinf(rho_a) and math.isinf(rho_b)
    if balanced:  # project out the translation gauge (1, -1)
        shift = (grad_f.sum() - grad_g.sum()) / (grad_f.numel() + grad_g.numel())
        grad_f, grad_g = grad_f - shift, grad_g + shift
    d_a = plan.sum(1) * kappa_a
    d_b = plan.sum(0) * kappa_b
    if plan.shape[1] <= plan.shape[0]:
        w_f, w_g = _schur_solve(plan, d_a, d_b, grad_f, grad_g, balanced)
    else:
        w_g, w_f = _schur_solve(plan.t(), d_b, d_a, grad_g, grad_f, balanced)
    return plan * (w_f[:, None] + w_g[None, :])


def _schur_solve(plan, d1, d2, r1, r2, balanced):
    """Solve [[diag d1, P], [P^T, diag d2]] (w1, w2) = (r1, r2), eliminating w1."""
    tiny = torch.finfo(plan.dtype).tiny
    d1 = d1.clamp_min(tiny)
    d2 = d2 + tiny
    rhs = r2 - plan.t() @ (r1 / d1)
    if plan.shape[1] <= DENSE_SCHUR_MAX:
        scaled = plan / d1[:, None]
        schur = torch.diag(d2) - plan.t() @ scaled
        if balanced:  # null vector 1: solve on its orthogonal complement
            schur = schur + d2.mean()
        w2, info = torch.linalg.solve_ex(schur, rhs)
        if int(info) != 0 or not bool(torch.isfinite(w2).all()):
            raise SingularSystemError(f'the {tuple(schur.shape)} Schur system is singular')
    else:
        w2 = _conjugate_gradient(plan, d1, d2, rhs, balanced)
    w1 = (r1 - plan @ w2) / d1
    return w1, w2


def _conjugate_gradient(plan, d1, d2, rhs, balanced, rtol=None, max_iters=500):
    """Jacobi-preconditioned conjugate gradients on the Schur system of ``_schur_solve``.

    In the balanced case the system has the null vector 1, so the right-hand side, the
    residual and the search directions are kept mean-zero at every step: rounding in
    fp32 otherwise leaves a component along 1 that no step can remove, and the
    iteration blew up to NaN. ``rtol`` (default: 1e-7, or ten units of rounding of
    the dtype if that is larger) is the residual relative to the right-hand side.
    Stops when the residual grows a thousandfold past its best (rounding has taken
    over) and returns the iterate of smallest residual, with a warning, if ``rtol`` is
    not reached.
    """
    def project(v):
        return v - v.mean() if balanced else v

    def apply(x):
        return project(d2 * x - plan.t() @ ((plan @ x) / d1))

    if rtol is None:
        rtol = max(1e-7, 10 * torch.finfo(rhs.dtype).eps)
    precond = (d2 - (plan**2 / d1[:, None]).sum(0)).clamp_min(d2 * 1e-3 + torch.finfo(
        d2.dtype).tiny)
    rhs = project(rhs)
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = project(r / precond)
    p = z.clone()
    rz = r @ z
    target = rtol * rhs.norm()
    best_x, best_norm = x, float(rhs.norm())
    for _ in range(max_iters):
        ap = apply(p)
        alpha = rz / (p @ ap).clamp_min(torch.finfo(p.dtype).tiny)
        x = x + alpha * p
        r = project(r - alpha * ap)
        norm = float(r.norm())
        if not math.isfinite(norm) or norm > 1e3 * best_norm:
            break
        if norm < best_norm:
            best_x, best_norm = x, norm
        if norm <= target:
            return x
        z = project(r / precond)
        rz_new = r @ z
        p = z + (rz_new / rz) * p
        rz = rz_new
    relative = best_norm / max(float(rhs.norm()), torch.finfo(rhs.dtype).tiny)
    warnings.warn('implicit Sinkhorn gradient: conjugate gradients did not reach '
                  f'rtol={rtol:.1e} (best relative residual {relative:.1e}); the gradient '
                  'is approximate. A larger epsilon conditions the system better; a float64 '
                  'cost lowers the rounding floor.', stacklevel=4)
    return best_x
