"""The dual Sinkhorn iteration shared by the dense, online and block-sparse solvers.

It maximises the dual of the entropic unbalanced problem (Chizat et al. 2018,
"Scaling algorithms for unbalanced optimal transport problems"),

.. math::
    \\max_{f, g}\\; -\\rho_a \\langle a, e^{-f/\\rho_a} - 1\\rangle
      - \\rho_b \\langle b, e^{-g/\\rho_b} - 1\\rangle
      - \\varepsilon \\langle a \\otimes b, e^{(f \\oplus g - C)/\\varepsilon} - 1\\rangle,

(for a balanced side, :math:`-\\rho\\langle a, e^{-f/\\rho} - 1\\rangle` becomes
:math:`\\langle a, f\\rangle`) by alternating exact block maximisations

.. math::
    f \\leftarrow \\tau_a\\, \\mathrm{smin}_a(g), \\quad
    g \\leftarrow \\tau_b\\, \\mathrm{smin}_b(f), \\quad
    \\tau = \\rho / (\\rho + \\varepsilon)\\ (\\tau = 1 \\text{ if } \\rho = \\infty),

with two accelerations, both cheap O(N + M) vector work:

* over-relaxation (Thibault et al. 2017, "Overrelaxed Sinkhorn-Knopp algorithm"):
  :math:`f \\leftarrow f + \\omega(\\tau_a \\mathrm{smin}_a(g) - f)`, 1 < omega < 2,
  fixed or estimated from the observed rate (:class:`Relaxation`);
* the translation-invariant step (Sejourne, Vialard & Peyre 2022, "Faster unbalanced
  optimal transport: translation invariant Sinkhorn and 1-D Frank-Wolfe"): after each
  half-step, the dual is maximised exactly along :math:`(f + \\lambda, g - \\lambda)`,
  which plain unbalanced Sinkhorn contracts only at rate :math:`\\tau^2` per
  iteration. The optimum is
  :math:`\\lambda = \\frac{\\rho_a\\rho_b}{\\rho_a+\\rho_b}
  \\log\\frac{\\langle a, e^{-f/\\rho_a}\\rangle}{\\langle b, e^{-g/\\rho_b}\\rangle}`
  (the kernel term is invariant; one-sided limits for a balanced side).

Convergence is checked every ``check_every`` iterations (the only device syncs) on
the relative L1 violation of the first-order conditions
:math:`P\\mathbf 1 = a e^{-f/\\rho_a}` and :math:`P^\\top \\mathbf 1 = b e^{-g/\\rho_b}`
(:math:`P\\mathbf 1 = a`, :math:`P^\\top\\mathbf 1 = b` when balanced); the row sums of the
current iterate come for free from the softmin of the next half-step.
"""
import contextlib
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import torch

from . import _cpu_step, _cuda_graph, _fused_step
from ._acceleration import RelaxedUpdate, Relaxation, Translation
from ._marginal_error import final_error, relative_violation, row_violation
from ._stall import Stall, stall_advice

# On CPU the iteration runs on this many threads (None: leave torch's setting). Each
# iteration is two memory-bound matrix-vector products plus O(N + M) vector work;
# one thread saturates the memory bus of a small machine, while entering a parallel
# region for a 4k-element vector op costs more than the op (measured: 8 ms per
# parallel region against 10 us serial on the 2-core benchmark VM).
CPU_THREADS = 1


_DEFAULT = object()  # sentinel: use the module's CPU_THREADS


@contextlib.contextmanager
def cpu_threads(device: torch.device, threads=_DEFAULT):
    """Run the enclosed iteration with ``threads`` torch threads on CPU.

    Args:
        device: the solve's device; nothing changes off CPU.
        threads: thread count; default ``CPU_THREADS``; ``None`` leaves torch's setting.
    """
    threads = CPU_THREADS if threads is _DEFAULT else threads
    if device.type != 'cpu' or threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class SinkhornConvergenceWarning(UserWarning):
    """Sinkhorn stopped at ``num_iters`` before its marginal error reached ``tol``."""


@dataclass
class LoopConfig:
    """Hyper-parameters of the dual iteration (see the public solvers for meanings)."""

    epsilon: float
    rho_a: float
    rho_b: float
    num_iters: int
    tol: float
    check_every: int
    omega: float
    translation_invariant: bool
    epsilon_scaling: Optional[float] = None
    epsilon_start: Optional[float] = None
    warn: bool = True
    solver_name: str = 'sinkhorn'
    # frames from _run up to the caller of the public solver, for warnings: _run, run,
    # the solver (block_sparse_sinkhorn, sinkhorn_online; sinkhorn's _solve adds one)
    stacklevel: int = 4


@dataclass
class LoopOutput:
    f: torch.Tensor
    g: torch.Tensor
    num_iters: int
    converged: torch.Tensor  # (B,) bool
    marginal_error: torch.Tensor  # (B,)
    method: str


def _tau(rho: float, eps: float) -> float:
    return 1.0 if math.isinf(rho) else rho / (rho + eps)


def _eager_iteration(op, f, g, eps, omega, taus, use_ti, translation, measure, err, masses,
                     log_b, rhos):
    """One iteration of ``_run`` as torch operations; returns ``(f, g, err)``.

    ``err`` (B,) is replaced by the relative marginal error of this iterate if
    ``measure``, else returned unchanged. ``taus``, ``masses``, ``rhos``: (a, b) pairs.
    """
    (tau_a, tau_b), (mass_a, mass_b), (rho_a, rho_b) = taus, masses, rhos
    # --- f half-step: f <- f + omega (tau_a smin_a(g) - f); the operator also
    # returns t = smin_b(f_new) (in one pass over the cost blocks for LogOperator) ---
    f_update = RelaxedUpdate(tau_a, omega)
    violation = functools.partial(row_violation, eps=eps, rho=rho_a) if measure else None
    f, t, viol = op.step(f, g, f_update, violation)
    if measure:
        err = torch.nan_to_num(viol / mass_a, nan=math.inf)
    if use_ti:
        f, g, lam = translation.after_f(f, g)
        t = t - lam  # smin_b(f + lam) = smin_b(f) - lam
    # --- g half-step: g <- g + omega (tau_b smin_b(f) - g) ---
    if measure:
        err = err + relative_violation(g, t, log_b, mass_b, eps, rho_b)
    g = torch.lerp(g, tau_b * t, omega) if omega != 1.0 else tau_b * t
    if use_ti:
        f, g, _ = translation.after_g(f, g)
    return f, g, err


def _epsilon_stages(cfg: LoopConfig, cost_range: Callable[[], float]):
    """List of (epsilon, iterations) stages; the last stage gets what remains."""
    if not cfg.epsilon_scaling:
        return [(cfg.epsilon, cfg.num_iters)]
    q = float(cfg.epsilon_scaling)
    if not 0 < q < 1:
        raise ValueError(f'`epsilon_scaling` must be in (0, 1), got {q}.')
    eps = cfg.epsilon_start if cfg.epsilon_start is not None else max(cost_range(), cfg.epsilon)
    stages = []
    used = 0
    while eps > cfg.epsilon and used + cfg.check_every < cfg.num_iters:
        stages.append((eps, cfg.check_every))
        used += cfg.check_every
        eps *= q
    stages.append((cfg.epsilon, cfg.num_iters - used))
    return stages


def run(op, make_fallback: Optional[Callable], log_a: torch.Tensor, log_b: torch.Tensor,
        cfg: LoopConfig, f0: Optional[torch.Tensor] = None, g0: Optional[torch.Tensor] = None,
        cost_range: Callable[[], float] = lambda: 1.0) -> LoopOutput:
    """Run the dual iteration with operator ``op``; see the module docstring and ``_run``.

    On CPU the iteration runs on ``op.cpu_threads`` threads if the operator sets it
    (``None``: torch's setting; batched block products gain from every core), else on
    ``CPU_THREADS``.
    """
    with cpu_threads(log_a.device, getattr(op, 'cpu_threads', _DEFAULT)):
        return _run(op, make_fallback, log_a, log_b, cfg, f0, g0, cost_range)


def _run(op, make_fallback: Optional[Callable], log_a: torch.Tensor, log_b: torch.Tensor,
        cfg: LoopConfig, f0: Optional[torch.Tensor] = None, g0: Optional[torch.Tensor] = None,
        cost_range: Callable[[], float] = lambda: 1.0) -> LoopOutput:
    """Run the dual iteration with operator ``op``; see the module docstring.

    Args:
        op: softmin operator (``_operators.py``); a kernel operator is refreshed at checks.
        make_fallback: builds the exact log-domain operator if ``op`` under/overflows.
        log_a: ``(B, N)`` log source weights; ``log_b``: ``(B, M)`` log target weights.
        cfg: iteration settings.
        f0, g0: optional warm-start potentials (cost units).
        cost_range: returns max(C) - min(C), used only as the default start of the
            epsilon-scaling schedule.
    """
    batch, num_rows = log_a.shape
    num_cols = log_b.shape[1]
    dtype, device = log_a.dtype, log_a.device
    f = torch.zeros(batch, num_rows, dtype=dtype, device=device) if f0 is None else f0.clone()
    g = torch.zeros(batch, num_cols, dtype=dtype, device=device) if g0 is None else g0.clone()
    mass_a, mass_b = log_a.exp().sum(-1), log_b.exp().sum(-1)
    rho_a, rho_b = cfg.rho_a, cfg.rho_b
    use_ti = cfg.translation_invariant and not (math.isinf(rho_a) and math.isinf(rho_b))
    primary, fallback = op, None
    log_until, failures, method = -1, 0, op.kind
    relax = Relaxation(cfg.omega, cfg.check_every)
    translation = Translation(log_a, log_b, rho_a, rho_b)
    stall, ti_stall = Stall(patience=5), Stall(patience=2)
    err = torch.full((batch,), math.inf, dtype=dtype, device=device)
    converged = torch.zeros(batch, dtype=torch.bool, device=device)
    out_err = None  # the error of the returned potentials, once measured
    good = (f.clone(), g.clone())
    it_total = good_it = 0  # good: finite potentials at the end of iteration good_it
    # Each iteration on the stored kernel in one piece: on GPU as a few fused Triton
    # launches (_fused_step.py), on CPU in one numpy pass (_cpu_step.py); otherwise
    # the eager iteration, on GPU optionally replayed as CUDA graphs.
    fused = (_fused_step.FusedIteration.create(op, rho_a, rho_b) or
             _cpu_step.CpuIteration.create(op, rho_a, rho_b))
    window_graph = (_cuda_graph.WindowGraph()
                    if fused is None and _cuda_graph.WindowGraph.usable(f) else None)
    stages = _epsilon_stages(cfg, cost_range)
    for stage, (eps, stage_iters) in enumerate(stages):
        final = stage == len(stages) - 1
        tau_a, tau_b = _tau(rho_a, eps), _tau(rho_b, eps)
        op.set_epsilon(eps, f, g)
        if fallback is not None and fallback is not op:
            fallback.set_epsilon(eps, f, g)
        stage_done = 0
        while stage_done < stage_iters:
            # GPU: the iterations before a window's end run as one CUDA graph replay
            skip = cfg.check_every - 1
            if (window_graph is not None and it_total % cfg.check_every == 0 and skip > 0
                    and stage_iters - stage_done > skip):
                replayed = window_graph.run(op, f, g, relax.value if final else 1.0, skip,
                                            tau_a, tau_b, use_ti, translation)
                if replayed is not None:
                    f, g = replayed
                    it_total += skip
                    stage_done += skip
            it_total += 1
            stage_done += 1
            # the last iteration ends a window too: its potentials are checked
            window_end = (it_total % cfg.check_every == 0 or
                          (final and stage_done == stage_iters))
            measure = final and window_end and (cfg.tol > 0 or relax.needs_error)
            omega = relax.value if final else 1.0
            if fused is not None and op is primary:
                # the same iteration as _eager_iteration, fused (see above)
                f, g, viol_a, viol_b = fused.iterate(f, g, eps, tau_a, tau_b, omega, use_ti,
                                                     translation, measure)
                if measure:
                    err = (torch.nan_to_num(viol_a / mass_a, nan=math.inf) +
                           torch.nan_to_num(viol_b / mass_b, nan=math.inf))
            else:
                f, g, err = _eager_iteration(op, f, g, eps, omega, (tau_a, tau_b), use_ti,
                                             translation, measure, err, (mass_a, mass_b),
                                             log_b, (rho_a, rho_b))
            if not window_end:
                continue
            # --- end of a check window: the only host-device syncs ---
            if not bool(torch.isfinite(f).all() & torch.isfinite(g).all()):
                # The stored kernel under/overflowed (e.g. a column all below e^-87 at
                # a rebuild from far-off potentials): redo the window from the last good
                # potentials in the exact log domain, then rebuild the kernel.
                if make_fallback is None or op is fallback:
                    # a stored kernel without the log-domain rescue: say where it is
                    advice = (" or solve with method='auto' (kernel iterations with a "
                              "log-domain rescue) or 'log'" if op.kind == 'kernel'
                              and make_fallback is None else '')
                    raise FloatingPointError(
                        f'{cfg.solver_name}: non-finite potentials ({method} softmin); '
                        f'check the cost scale against epsilon={eps}{advice}.')
                f, g = good[0].clone(), good[1].clone()
                stage_done -= it_total - good_it  # the window's iterations are redone
                it_total = good_it
                translation.reset()
                if relax.value != 1.0:  # an over-relaxed step may have caused it
                    relax.disable()
                failures += 1
                if fallback is None:
                    fallback = make_fallback()
                fallback.set_epsilon(eps, f, g)
                op, method = fallback, f'{primary.kind}+log'
                log_until = it_total + cfg.check_every
                continue
            good, good_it = (f.clone(), g.clone()), it_total
            if op is fallback and it_total >= log_until and failures <= 2:
                op = primary
                op.set_epsilon(eps, f, g)
            elif op is primary:
                op.refresh(f, g)
            if not final:
                continue
            worst = float(err.max()) if measure else None
            relax.update(worst)
            if measure and cfg.tol > 0:
                converged = err < cfg.tol
                if bool(converged.all()):
                    # the loop's estimate mixes the row error before and the column
                    # error after a half-step: stop once the potentials meet tol
                    out_err = final_error(op, fallback or make_fallback, f, g, log_a, log_b,
                                          eps, (cfg.rho_a, cfg.rho_b), failures)
                    converged = out_err < cfg.tol
                    if bool(converged.all()):
                        break
                    out_err = None
                    if make_fallback is not None and op is not fallback and failures:
                        # after a rescue the stored kernel's rounding hid the remaining
                        # error (it measured itself below tol): finish in the log domain
                        fallback = fallback or make_fallback()
                        fallback.set_epsilon(eps, f, g)
                        op, method, log_until = fallback, f'{primary.kind}+log', math.inf
                        continue
                floor = getattr(op, 'precision_floor', 0.0)
                if use_ti and ti_stall.update(worst, floor):
                    # The translation balances the target masses against the kernel's
                    # row and column sums, whose fp32 rounding differs by ~floor: at that
                    # level its fixed point is off the optimum. Finish without it.
                    use_ti = False
                elif stall.update(worst, floor):
                    break
    if out_err is None:  # not measured at a stop on convergence
        out_err = final_error(op, fallback or make_fallback, f, g, log_a, log_b,
                              cfg.epsilon, (cfg.rho_a, cfg.rho_b), failures)
    if cfg.tol > 0:  # of the potentials returned, not the loop's estimate
        converged = out_err < cfg.tol
    if cfg.tol > 0 and not bool(converged.all()) and cfg.warn and stall.stalled:
        warnings.warn(
            f'{cfg.solver_name} stopped at marginal error {float(out_err.max()):.2e} > '
            f'tol={cfg.tol:.1e} after {it_total} iterations: '
            + stall_advice(stall, primary, cfg), SinkhornConvergenceWarning,
            stacklevel=cfg.stacklevel)
    elif cfg.tol > 0 and not bool(converged.all()) and cfg.warn:
        warnings.warn(
            f'{cfg.solver_name} did not converge: marginal error {float(out_err.max()):.2e} > '
            f'tol={cfg.tol:.1e} after num_iters={it_total}. Increase `num_iters`, increase '
            f'`epsilon` (now {cfg.epsilon:g}; fewer iterations are needed for larger values), '
            f'keep over-relaxation `omega` > 1'
            + ('' if math.isinf(rho_a) and math.isinf(rho_b) else
               " and `translation_invariant=True`") + ', or loosen `tol`.',
            SinkhornConvergenceWarning, stacklevel=cfg.stacklevel)
    return LoopOutput(f=f, g=g, num_iters=it_total, converged=converged,
                      marginal_error=out_err, method=method)


def tau_pair(rho: Tuple[float, float], eps: float) -> Tuple[float, float]:
    """Return (tau_a, tau_b) = rho / (rho + eps), 1 for infinite rho."""
    return _tau(rho[0], eps), _tau(rho[1], eps)
