"""pending_validation.validates_after agrees with MMEngine's own train loop."""
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
from mmengine.runner import IterBasedTrainLoop

from mmseg_saot.engine.hooks.pending_validation import validates_after


def _run_real_loop(max_iters, val_begin, val_interval, dynamic_intervals):
    """Run MMEngine's IterBasedTrainLoop.run on a stub runner. Returns the iterations it
    validated after, and those validates_after predicted from inside each iteration
    (where SaveOnInterruptHook.after_train_iter asks)."""
    validated, predicted = [], []
    runner = MagicMock()
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)  # set up by hand: no dataloader
    loop._runner = runner
    loop._max_iters, loop._iter, loop.stop_training = max_iters, 0, False
    loop.val_begin, loop.val_interval = val_begin, val_interval
    from mmengine.runner.utils import calc_dynamic_intervals
    loop.dynamic_milestones, loop.dynamic_intervals = calc_dynamic_intervals(
        val_interval, dynamic_intervals)
    loop.dataloader_iterator = iter(range(10**6))
    runner.train_loop = loop
    runner.val_loop = SimpleNamespace(run=lambda: validated.append(loop._iter))

    def run_iter(batch):
        if validates_after(runner, loop._iter + 1):
            predicted.append(loop._iter + 1)
        loop._iter += 1

    loop.run_iter = run_iter
    loop.run()
    return validated, predicted


@pytest.mark.parametrize('max_iters, val_begin, val_interval, dynamic_intervals', [
    (20, 1, 4, None),
    (22, 1, 4, None),  # the last iteration is validated too
    (20, 9, 3, None),
    # intervals that change during training: the interval of the iteration's end was
    # taken before the loop switched to it (9 and 21 were missed, 12 and 25 extra)
    (30, 1, 4, [(10, 3), (21, 5)]),
])
def test_validates_after_predicts_the_loops_own_validations(max_iters, val_begin,
                                                             val_interval, dynamic_intervals):
    validated, predicted = _run_real_loop(max_iters, val_begin, val_interval,
                                          dynamic_intervals)
    assert validated and predicted == validated
