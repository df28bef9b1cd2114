"""The two accelerations of the dual iteration in ``_loop.py``.

* :class:`Relaxation`: the over-relaxation factor (Thibault et al. 2017), fixed or
  estimated once per check window from the observed convergence rate.
* :class:`Translation`: the translation-invariant step (Sejourne, Vialard & Peyre
  2022), an exact dual maximisation along ``(f + lam, g - lam)`` after each half-step.
* :class:`RelaxedUpdate`: a relaxed half-step, in torch and on numpy buffers.
"""
import math
from dataclasses import dataclass
from typing import Optional

import torch

from ._matvec import np


class Relaxation:
    """Over-relaxation factor, updated once per check window.

    ``omega='auto'`` estimates Young's optimal SOR factor (Thibault et al. 2017,
    sec. 3): with ``mu2`` the per-iteration error rate of plain Sinkhorn,
    ``omega* = 2 / (1 + sqrt(1 - mu2))``. Two windows of plain steps give a first
    ``mu2``; afterwards, a window contracting at rate ``lam`` with factor ``omega``
    gives ``mu2 = (lam + omega - 1)^2 / (lam omega^2)`` (the SOR eigenvalue relation),
    so the factor is raised while the observed rate is slower than the ``omega - 1``
    that the optimum achieves (the early plain rate underestimates the asymptotic
    one), by at most ``MAX_STEP`` per window, up to ``OMEGA_MAX``. A fixed float is
    used from the second window on. Either way, if the error exceeds twice the best
    seen, the factor drops to 1 (for 'auto': with a ceiling 0.2 below the factor that
    diverged, re-estimated at most three times).
    """

    OMEGA_MAX = 1.95
    MAX_STEP = 0.3  # per window: early plain rates are transients, ramp up gradually

    def __init__(self, omega, check_every: int):
        self.auto = omega == 'auto'
        self.fixed = None if self.auto else float(omega)
        self.off = not self.auto and self.fixed == 1.0
        self.check_every = check_every
        self.value = 1.0
        self.cap = self.OMEGA_MAX
        self.best = math.inf
        self.errors = []  # errors of consecutive windows run with the current value
        self.restarts = 0

    @property
    def needs_error(self) -> bool:
        return self.auto and not self.off

    def update(self, err: Optional[float]) -> None:
        if self.off:
            self.value = 1.0
            return
        if err is not None and math.isfinite(err):
            if self.value != 1.0 and err > 2.0 * self.best:
                # Over-relaxation diverging: plain steps, and a lower ceiling from now on.
                self.cap = max(1.0, min(self.cap, self.value) - 0.2)
                self.value, self.errors = 1.0, []
                self.restarts += 1
                self.off = self.restarts > 3 or not self.auto or self.cap <= 1.0
                return
            self.best = min(self.best, err)
        if not self.auto:
            self.value = self.fixed
            return
        if err is None or not math.isfinite(err):
            return
        self.errors.append(err)
        if len(self.errors) < 2 or not self.errors[-2] > 0:
            return
        lam = (self.errors[-1] / self.errors[-2])**(1.0 / self.check_every)
        omega = self.value
        if not 0 < lam < 1 or lam <= omega - 1.0 + 0.02:
            return
        mu2 = (lam + omega - 1.0)**2 / (lam * omega**2)
        if mu2 < 1:
            target = 2.0 / (1.0 + math.sqrt(1.0 - mu2))
            new = min(self.cap, target, omega + self.MAX_STEP)
            if new > omega + 0.01:
                self.value, self.errors = new, [err]

    def disable(self) -> None:
        self.off, self.value = True, 1.0


@dataclass(frozen=True)
class RelaxedUpdate:
    """A half-step ``f <- f + omega (tau smin - f)`` (``f <- tau smin`` if omega = 1);
    the same for g with ``smin_b``.

    Called on torch tensors; :meth:`into` does the same on numpy arrays for the CPU
    iteration of ``_cpu_step.py``, where a numpy call on a vector of a few thousand
    entries costs a few us against ~8 us for a torch op.
    """

    tau: float
    omega: float = 1.0

    def __call__(self, f_old: torch.Tensor, smin: torch.Tensor) -> torch.Tensor:
        if self.omega != 1.0:
            return torch.lerp(f_old, self.tau * smin, self.omega)
        return self.tau * smin

    def into(self, f_old, smin, out) -> None:
        """Write the update of numpy ``f_old`` into ``out``; overwrites ``smin``."""
        smin *= self.tau
        if self.omega == 1.0:
            out[...] = smin
            return
        smin -= f_old
        smin *= self.omega
        smin += f_old
        out[...] = smin


class Translation:
    """Translation-invariant step: exact dual maximisation along ``(f + lam, g - lam)``.

    With ``A = log <a, e^{-f/rho_a}>`` and ``B = log <b, e^{-g/rho_b}>`` (``1/inf = 0``),
    ``lam = (A - B) / (1/rho_a + 1/rho_b)``. The translation moves ``A`` by
    ``-lam/rho_a`` and ``B`` by ``+lam/rho_b`` exactly, so after an f-update only ``A``
    is recomputed (one log-sum-exp) and ``B`` comes from the cache, and vice versa.

    Potentials may be torch tensors or, for CPU problems, numpy arrays (the CPU
    iteration of ``_cpu_step.py``); the cache ``A``, ``B`` takes the kind of the last
    potentials given.
    """

    def __init__(self, log_a, log_b, rho_a, rho_b):
        self.log_a, self.log_b = log_a, log_b
        self.inv_a = 0.0 if math.isinf(rho_a) else 1.0 / rho_a
        self.inv_b = 0.0 if math.isinf(rho_b) else 1.0 / rho_b
        total = self.inv_a + self.inv_b
        self.kappa = 1.0 / total if total > 0 else 0.0  # balanced: no translation
        self.reset()

    def reset(self):
        self.A = self.B = None

    def _log_a(self, f):
        return _logsumexp(_like(self.log_a, f) - f * self.inv_a)

    def _log_b(self, g):
        return _logsumexp(_like(self.log_b, g) - g * self.inv_b)

    def _apply(self, f, g):
        self.A, self.B = _like(self.A, f), _like(self.B, f)
        lam = self.kappa * (self.A - self.B)
        self.A = self.A - lam * self.inv_a
        self.B = self.B + lam * self.inv_b
        lam = lam[..., None]
        return f + lam, g - lam, lam

    def after_f(self, f, g):
        self.A = self._log_a(f)
        if self.B is None:
            self.B = self._log_b(g)
        return self._apply(f, g)

    def after_g(self, f, g):
        self.B = self._log_b(g)
        if self.A is None:
            self.A = self._log_a(f)
        return self._apply(f, g)


def _like(x, ref):
    """``x`` as the kind of ``ref``: a CPU torch tensor and a numpy array share memory."""
    if isinstance(ref, torch.Tensor):
        return x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
    return x.numpy() if isinstance(x, torch.Tensor) else x


def _logsumexp(x):
    """``torch.logsumexp(x, -1)`` of a torch tensor or a numpy array (``-inf`` where
    every entry is ``-inf``)."""
    if isinstance(x, torch.Tensor):
        return torch.logsumexp(x, -1)
    top = x.max(-1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    with np.errstate(divide='ignore'):
        return np.log(np.exp(x - top).sum(-1)) + top[..., 0]
