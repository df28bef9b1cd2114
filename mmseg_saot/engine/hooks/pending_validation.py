"""A validation cut short by Ctrl-C (or a crash), recorded so that ``--resume`` runs it.

The train loop validates after an iteration and then moves on; a run stopped at such an
iteration (during it, or during its validation) resumes *after* it, so that validation
would never happen, and for the last iteration it is the run's final result.
``work_dir/pending_validation`` holds the iteration whose validation is owed: written
when a stop skips it and when a validation of a saved iteration starts, removed when one
finishes. Keyed by the iteration, a file an earlier run left in the folder only matters
to a resume from that same iteration.
"""
import bisect
import os
import os.path as osp
from typing import Optional

from mmengine import dist

from mmseg_saot.utils.atomic import atomic_write_text

PENDING_FILE = 'pending_validation'


def mark_pending(work_dir: str, iteration: int) -> None:
    """Record that the validation after ``iteration`` is owed (main process only)."""
    if dist.is_main_process():
        atomic_write_text(osp.join(work_dir, PENDING_FILE), f'{iteration}\n')


def clear_pending(work_dir: str, iteration: int) -> None:
    """Remove the record if it names ``iteration`` (main process only)."""
    if dist.is_main_process() and pending_iteration(work_dir) == iteration:
        try:
            os.remove(osp.join(work_dir, PENDING_FILE))
        except FileNotFoundError:
            pass


def pending_iteration(work_dir: str) -> Optional[int]:
    """The iteration whose validation is owed, or None (no record, or an unreadable one)."""
    try:
        with open(osp.join(work_dir, PENDING_FILE), encoding='utf-8') as record:
            text = record.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def pending_on_any_rank(work_dir: str, iteration: int) -> bool:
    """Whether the validation after ``iteration`` is owed, as the main process sees it
    (its work_dir may be the only one that holds the record). Every rank must call it."""
    owed = [pending_iteration(work_dir) == iteration]
    if dist.get_world_size() > 1:
        dist.broadcast_object_list(owed, src=0)
    return bool(owed[0])


def validates_after(runner, iteration: int) -> bool:
    """Whether an iteration-based train loop validates after ``iteration`` (1-based count
    of iterations done), by the loop's own rule (MMEngine 0.10's ``IterBasedTrainLoop.run``
    and ``_decide_current_val_interval``, which switches ``dynamic_intervals`` after the
    iteration's hooks ran; ``tests/engine/hooks/test_pending_validation.py`` runs the real
    loop against this)."""
    loop = runner.train_loop
    interval = getattr(loop, 'val_interval', None)
    milestones = getattr(loop, 'dynamic_milestones', None)
    if milestones:
        interval = loop.dynamic_intervals[bisect.bisect(milestones, iteration + 1) - 1]
    begin, last = getattr(loop, 'val_begin', 1), getattr(loop, 'max_iters', None)
    if not isinstance(interval, int) or interval < 1 or runner.val_loop is None:
        return False
    return iteration >= begin and (iteration % interval == 0 or iteration == last)
