"""When the Sinkhorn loop stops early: a marginal error that no longer falls."""
from collections import deque

import torch


class Stall:
    """Detects a marginal error stuck at the rounding floor of the operator.

    The floor is the operator's ``precision_floor`` (for fp32 products: fp32 epsilon x
    sqrt(max(N, M)), the typical accumulation error of one product). Stalled = the
    mean error of the last ``patience`` check windows is within 10 % of the mean of
    the ``patience`` before while within 10x of the floor; or, within 100x of it, the
    mean of the last ``2 * patience`` windows is within 1 % of the mean of the ones
    before. Means, not the best error: fp32 rounding makes the error jitter by a few
    per cent, so the best is a lucky low that steady but slow convergence (small
    epsilon: 0.2 % per window) takes long to beat, and that used to count as stalled.
    """

    def __init__(self, patience: int = 5):
        self.patience = patience
        self.errors = deque(maxlen=4 * patience)  # the errors of the last windows
        self.stalled = False
        self.reason = None  # 'floor' (within 10x of it) or 'crawl' (slow, within 100x)
        self.floor = 0.0

    def update(self, err: float, floor: float) -> bool:
        self.floor = floor
        self.errors.append(err)
        if self._flat(self.patience, 0.9, 10.0 * floor):
            self.reason = 'floor'
        elif self._flat(2 * self.patience, 0.99, 100.0 * floor):
            self.reason = 'crawl'
        else:
            self.reason = None
        self.stalled = self.reason is not None
        return self.stalled

    def _flat(self, windows: int, ratio: float, ceiling: float) -> bool:
        """The mean of the last ``windows`` errors is below ``ceiling`` and above
        ``ratio`` x the mean of the ``windows`` before."""
        if len(self.errors) < 2 * windows:
            return False
        errors = list(self.errors)
        recent = sum(errors[-windows:]) / windows
        before = sum(errors[-2 * windows:-windows]) / windows
        return recent < ceiling and recent > ratio * before


def stall_advice(stall: Stall, op, cfg) -> str:
    """Why the loop stopped early (``stall.stalled``) and what to change; ``cfg`` is the
    loop's ``LoopConfig``."""
    floor = stall.floor
    if stall.reason == 'crawl':
        window = 2 * stall.patience * cfg.check_every
        go_on = ("use method='log' (no stored kernel) to go on"
                 if cfg.solver_name == 'sinkhorn' else 'pass float64 inputs to go on')
        return (f'the error fell by less than 1 % over the last {window} iterations, '
                f'within 100x of the rounding floor of the stored kernel (~{floor:.0e}): '
                f'convergence at epsilon={cfg.epsilon:g} has slowed to a crawl. Increase '
                f'`epsilon`, loosen `tol`, or {go_on}.')
    if getattr(op, 'storage_dtype', None) in (torch.float16, torch.bfloat16):
        lower = 'store the kernel in float32 (`storage_dtype=torch.float32`)'
    elif cfg.solver_name == 'sinkhorn':
        lower = 'pass a float64 cost (and the default `storage_dtype`)'
    else:
        lower = 'pass float64 inputs'
    return (f'the error stopped decreasing at the rounding floor of the kernel storage/'
            f'accumulation (~{floor:.0e} here). Loosen `tol`, or {lower} for a lower floor.')
