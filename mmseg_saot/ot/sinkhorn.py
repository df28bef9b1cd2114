"""Entropic unbalanced optimal transport on a dense cost matrix."""
import math
from typing import Optional, Union

import torch

from . import _loop
from ._implicit import ImplicitPotentials
from ._operators import KernelOperator, LogOperator
from ._validation import (FLOAT_DTYPES, Rho, balanced_masses, check_cost, check_epsilon,
                          check_positive_int, check_real, initial_potential, marginal,
                          parse_rho)
from .costs import DenseCost
from .result import SinkhornResult

# Default chosen by measurement (iterations to marginal error 1e-6, fp64, N = M = 1024,
# d = 384, cosine cost; tools/benchmark_ot.py --iters prints the table): no fixed omega
# is best everywhere (clustered unbalanced eps 0.05: 1.5-1.7 best, 50 vs 130 plain;
# clustered balanced: 1.8 best, 500 vs 3480 plain), while 'auto' was within one check
# window of the best fixed value or better (230 iterations on the balanced case).
DEFAULT_OMEGA = 'auto'
METHODS = ('auto', 'kernel', 'log')
# Potentials, marginals and all O(N + M) work: fp64 whatever the cost dtype. With fp32
# potentials of size ~1 and epsilon 0.05, exp(f / eps) carries ~1e-6 relative rounding
# and the marginal error stalls near 1e-5; the vectors are tiny next to the matrix.
DUAL_DTYPE = torch.float64


def sinkhorn(cost: torch.Tensor,
             a: Optional[torch.Tensor] = None,
             b: Optional[torch.Tensor] = None,
             *,
             epsilon: float,
             rho: Rho = math.inf,
             num_iters: int = 1000,
             tol: float = 1e-6,
             check_every: int = 10,
             omega: Union[str, float] = DEFAULT_OMEGA,
             translation_invariant: bool = True,
             epsilon_scaling: Optional[float] = None,
             epsilon_start: Optional[float] = None,
             storage_dtype: Optional[torch.dtype] = None,
             method: str = 'auto',
             f_init: Optional[torch.Tensor] = None,
             g_init: Optional[torch.Tensor] = None,
             warn: bool = True) -> SinkhornResult:
    """Solve entropic unbalanced optimal transport by Sinkhorn iterations.

    Solves

    .. math::
        \\min_{P \\ge 0}\\; \\langle P, C\\rangle + \\varepsilon\\,\\mathrm{KL}(P \\,|\\, a b^\\top)
        + \\rho_a \\mathrm{KL}(P\\mathbf 1 \\,|\\, a)
        + \\rho_b \\mathrm{KL}(P^\\top \\mathbf 1\\,|\\, b),

    with :math:`\\mathrm{KL}(p|q) = \\sum p \\log(p/q) - p + q` (Chizat et al. 2018). The
    solution is :math:`P_{ij} = a_i b_j \\exp((f_i + g_j - C_{ij})/\\varepsilon)`. This is
    POT 0.9.5's ``ot.unbalanced.sinkhorn_unbalanced(a, b, C, reg=epsilon, reg_m=rho,
    reg_type='kl')`` (reference measure ``a b^T``; OTT-JAX and POT's ``'entropy'`` use
    ``1 1^T`` instead, a different problem when the marginals are not uniform).

    Limiting cases: ``rho = inf`` is balanced OT (``P1 = a``, ``P^T1 = b``); ``rho -> 0``
    gives ``P -> a b^T e^{-C/eps}`` (a softmax-kNN of temperature eps); ``eps -> 0`` gives
    unregularised (unbalanced) OT. With unbalanced marginals, adding a constant to C
    changes the transported mass; in balanced OT it changes nothing.

    Speed (see ``_operators.py``): on every device the default path stores the kernel
    ``exp((f_hat + g_hat - C)/eps)`` once and iterates on it, absorbing the scalings
    into the potentials when they drift (Schmitzer 2019): on CPU one fused pass over
    the kernel per iteration (each row block serves both half-steps while in cache;
    the products on numpy's BLAS threads, the vector work on one thread, see
    ``_cpu_step.py`` and ``_loop.CPU_THREADS``), on GPU five fused
    Triton kernels per iteration, the two products with the vector work as epilogues
    (``_fused_step.py``; fp32 sums for every storage dtype). At small eps most kernel
    entries underflow to zero at a rebuild; the kernel is rebuilt from the cost before
    the potentials could give such an entry mass again (absorption cannot revive a
    zero; ``_refresh.absorb_or_rebuild``). If the kernel still under/overflows
    (e.g. a column empty at the first build), the failing window is redone in the
    exact log domain and the kernel is rebuilt; after repeated failures the solve
    stays in the log domain; such a solve reports its marginal error measured in the
    log domain (a kernel that failed cannot be trusted to). Over-relaxation and the translation-invariant
    step cut the iterations to a given accuracy several-fold (``_loop.py``).

    Precision: potentials and all O(N + M) work are fp64; the N x M products
    accumulate in fp32 (fp64 for fp64 costs). The fp32 rounding of those products
    sets a floor on the reachable marginal error, roughly ``6e-8 * sqrt(max(N, M))``
    (1e-7 to 5e-6 at N = 1e3 to 2e4); when the error stalls there the solve stops
    early with a warning instead of spinning to ``num_iters`` (pass a float64 cost
    for ~1e-15).

    Gradient: if ``cost`` requires grad, the potentials are differentiated implicitly
    at the solution (``_implicit.py``), so ``result.plan``, ``result.objective()`` and
    anything computed from them (e.g. ``transfer_labels``) back-propagate into the
    cost and whatever produced it (features, a learned metric). Memory is that of
    the plan, independent of the number of iterations; it is exact at convergence,
    so keep ``tol`` small. ``a``, ``b`` and ``epsilon`` receive no gradient.

    Args:
        cost: ``(N, M)`` or batched ``(B, N, M)`` cost matrix, fp16/bf16/fp32/fp64, finite.
        a: source weights ``(N,)`` or ``(B, N)``, non-negative; default uniform ``1/N``.
        b: target weights ``(M,)`` or ``(B, M)``; default uniform ``1/M``.
        epsilon: entropic regularisation, in cost units (> 0). With the cosine cost in
            [0, 2], 0.05 is SAOT's working point; values down to ~1e-3 are handled.
        rho: marginal penalty in cost units, a number or a pair ``(rho_a, rho_b)``;
            ``inf`` (default) makes that marginal a hard constraint. Balanced OT (both
            ``inf``) needs ``a.sum() == b.sum()`` up to the rounding of the weights
            (relative 1e-6, ``2 sqrt(n) eps`` for fp32 weights over many points,
            ``2 eps`` of fp16/bf16 ones): unequal masses raise ``ValueError`` up front,
            as no plan meets both constraints.
        num_iters: maximum number of iterations (each updates f then g).
        tol: stop when ``marginal_error < tol`` (relative L1, see ``SinkhornResult``);
            ``tol=0`` runs exactly ``num_iters`` iterations and never warns.
        check_every: iterations between convergence checks (the only device syncs).
        omega: over-relaxation factor in [1, 2), or ``'auto'`` (default): estimate the
            optimal factor from the observed convergence rate (``_acceleration.Relaxation``); 1
            is plain Sinkhorn (Thibault et al. 2017). A factor is dropped back to 1 if
            the error grows past twice its best.
        translation_invariant: apply the translation-invariant step of Sejourne et al.
            2022 when a side is unbalanced (no effect when balanced).
        epsilon_scaling: if set, a factor q in (0, 1): run ``check_every`` iterations at
            each of ``epsilon_start * q^k`` (k = 0, 1, ...) before the target epsilon.
        epsilon_start: first epsilon of the schedule; default ``max(C) - min(C)``.
        storage_dtype: dtype of the stored kernel (default ``cost.dtype``); fp16/bf16
            halve the memory traffic on a GPU, accumulation stays fp32. The iterations
            converge on the rounded kernel: a ``tol`` below its rounding (~5e-5 fp16,
            ~5e-4 bf16 at eps 0.05) is reached there, not by the plan of the cost.
        method: ``'auto'`` (kernel, log-domain rescue), ``'kernel'`` (no rescue:
            raises FloatingPointError on under/overflow) or ``'log'`` (always exact
            chunked logsumexp; slower, for tiny epsilon).
        f_init, g_init: optional warm-start potentials, shapes of ``a`` and ``b``.
        warn: emit ``SinkhornConvergenceWarning`` if ``tol`` is not reached.

    Returns:
        :class:`SinkhornResult` with potentials ``f``, ``g``, the lazily built ``plan``,
        ``num_iters``, ``converged`` and ``marginal_error``.

    Raises:
        ValueError: NaN/inf in ``cost``, ``a``, ``b``; shape mismatches; bad parameters.

    References:
        Chizat, Peyre, Schmitzer, Vialard (2018). Scaling algorithms for unbalanced
        optimal transport problems. Math. Comp. 87.
        Schmitzer (2019). Stabilized sparse scaling algorithms for entropy regularized
        transport problems. SIAM J. Sci. Comput. 41.
        Thibault, Chizat, Dossal, Papadakis (2017). Overrelaxed Sinkhorn-Knopp algorithm
        for regularized optimal transport. arXiv:1711.01851.
        Sejourne, Vialard, Peyre (2022). Faster unbalanced optimal transport: translation
        invariant Sinkhorn and 1-D Frank-Wolfe. AISTATS.
        Feydy (2020). Geometric data analysis, beyond convolutions (geomloss).
    """
    # On CPU the whole solve runs on one torch thread (kernel rebuilds on ``workers``):
    # a parallel torch op in the ~0.1 s after numpy's BLAS (this solve's or the one
    # before) waits for OpenBLAS's spinning threads to yield the cores; each such op,
    # even a log of 4096 entries, took 1-5 ms (2-core AMD EPYC).
    workers = torch.get_num_threads()
    with _loop.cpu_threads(getattr(cost, 'device', torch.device('cpu'))):
        return _solve(cost, a, b, epsilon=epsilon, rho=rho, num_iters=num_iters, tol=tol,
                      check_every=check_every, omega=omega,
                      translation_invariant=translation_invariant,
                      epsilon_scaling=epsilon_scaling, epsilon_start=epsilon_start,
                      storage_dtype=storage_dtype, method=method, f_init=f_init,
                      g_init=g_init, warn=warn, workers=workers)


def _solve(cost, a, b, *, epsilon, rho, num_iters, tol, check_every, omega,
           translation_invariant, epsilon_scaling, epsilon_start, storage_dtype, method,
           f_init, g_init, warn, workers) -> SinkhornResult:
    """The body of :func:`sinkhorn` (arguments as there; ``workers``: threads of a CPU
    kernel rebuild)."""
    check_cost(cost)
    epsilon = check_epsilon(epsilon)
    rho_pair = parse_rho(rho)
    batched = cost.dim() == 3
    cost3 = cost if batched else cost.unsqueeze(0)
    batch, num_rows, num_cols = cost3.shape
    bsz = batch if batched else None
    a3 = marginal('a', a, bsz, num_rows, 'N = cost.shape[-2]', cost.device, DUAL_DTYPE).detach()
    b3 = marginal('b', b, bsz, num_cols, 'M = cost.shape[-1]', cost.device, DUAL_DTYPE).detach()
    b3 = balanced_masses(a3, b3, rho_pair, a, b)
    f0 = initial_potential('f_init', f_init, a3, batched)
    g0 = initial_potential('g_init', g_init, b3, batched)
    storage_dtype = storage_dtype or cost.dtype
    if storage_dtype not in FLOAT_DTYPES:
        raise ValueError(f'`storage_dtype` must be one of {FLOAT_DTYPES}, got {storage_dtype}.')
    if method not in METHODS:
        raise ValueError(f'`method` must be one of {METHODS}, got {method!r}.')
    cfg = make_config(epsilon, rho_pair, num_iters, tol, check_every, omega,
                      translation_invariant, epsilon_scaling, epsilon_start, warn, 'sinkhorn')
    cfg.stacklevel += 1  # warnings skip this function too
    log_a, log_b = torch.log(a3), torch.log(b3)
    source = DenseCost(cost3.detach())

    def make_log():
        return LogOperator(source, log_a, log_b, epsilon)

    with torch.no_grad():
        if method == 'log':
            op, fallback = make_log(), None
        else:
            op = KernelOperator(source, log_a, log_b, epsilon, storage_dtype,
                                cpu_workers=workers)
            fallback = make_log if method == 'auto' else None
        out = _loop.run(op, fallback, log_a, log_b, cfg, f0, g0,
                        cost_range=lambda: float(cost3.amax() - cost3.amin()))
        del op
    dtype = source.dtype  # fp64 for fp64 costs, else fp32
    f, g, a3, b3 = (t.to(dtype) for t in (out.f, out.g, a3, b3))
    if cost.requires_grad and torch.is_grad_enabled():
        info = (f'epsilon={epsilon:g}, num_iters={out.num_iters}, marginal error '
                f'{float(out.marginal_error.max()):.1e}')
        f, g = ImplicitPotentials.apply(cost3, f, g, torch.log(a3), torch.log(b3), epsilon,
                                        *rho_pair, info)
        source = DenseCost(cost3)
    return build_result(f, g, a3, b3, epsilon, rho_pair, out, source, batched)


def make_config(epsilon, rho_pair, num_iters, tol, check_every, omega, translation_invariant,
                epsilon_scaling, epsilon_start, warn, name) -> _loop.LoopConfig:
    """Validate the iteration options shared by all solvers and pack them."""
    num_iters = check_positive_int('num_iters', num_iters)
    check_every = check_positive_int('check_every', check_every)
    tol = check_real('tol', tol)
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f'`tol` must be a finite number >= 0, got {tol}.')
    if omega != 'auto':
        try:
            omega = float(omega)
        except (TypeError, ValueError):
            raise ValueError(f"`omega` must be 'auto' or a number in [1, 2), got "
                             f'{omega!r}.') from None
        if not 1.0 <= omega < 2.0:
            raise ValueError(f"`omega` must be 'auto' or in [1, 2), got {omega}.")
    if epsilon_start is not None:
        epsilon_start = check_epsilon(epsilon_start, 'epsilon_start')
        if epsilon_scaling is None:
            raise ValueError('`epsilon_start` is the first epsilon of epsilon scaling, which '
                             'is off: pass `epsilon_scaling` too (e.g. 0.5), or leave '
                             '`epsilon_start` out.')
        if epsilon_start <= epsilon:
            raise ValueError(f'`epsilon_start` ({epsilon_start:g}) must be above `epsilon` '
                             f'({epsilon:g}): epsilon scaling goes down from it.')
    if epsilon_scaling is not None and not 0.0 < float(epsilon_scaling) < 1.0:
        raise ValueError(f'`epsilon_scaling` must be a factor in (0, 1), or None to run at '
                         f'`epsilon` only; got {epsilon_scaling}.')
    return _loop.LoopConfig(epsilon=epsilon, rho_a=rho_pair[0], rho_b=rho_pair[1],
                            num_iters=num_iters, tol=tol, check_every=check_every, omega=omega,
                            translation_invariant=bool(translation_invariant),
                            epsilon_scaling=epsilon_scaling, epsilon_start=epsilon_start,
                            warn=warn, solver_name=name)


def build_result(f, g, a3, b3, epsilon, rho_pair, out, source, batched) -> SinkhornResult:
    """Pack loop output into a :class:`SinkhornResult` (squeezing an unbatched problem)."""

    def unb(t):
        return t if batched else t.squeeze(0)

    return SinkhornResult(f=unb(f), g=unb(g), a=unb(a3), b=unb(b3), epsilon=epsilon,
                          rho=rho_pair, num_iters=out.num_iters, converged=unb(out.converged),
                          marginal_error=unb(out.marginal_error), method=out.method,
                          _source=source, _batched=batched)
