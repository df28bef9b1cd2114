"""Ctrl-C (SIGINT) or SIGTERM during training: finish the iteration, save, stop."""
import os
import os.path as osp
import signal
import sys
import threading
import time
from types import CodeType
from typing import Dict, NoReturn, Optional, Sequence, Tuple

import torch
from mmengine import dist
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop
from mmseg.registry import HOOKS

from mmseg_saot.engine.hooks.pending_validation import (clear_pending, mark_pending,
                                                        pending_on_any_rank, validates_after)
from mmseg_saot.utils.atomic import atomic_write_text
from mmseg_saot.utils import worker_signals
from mmseg_saot.utils.errors import ConfigError


class TrainingInterrupted(Exception):
    """Raised by :class:`SaveOnInterruptHook` once its checkpoint is on disk.

    Attributes:
        checkpoint: path of the checkpoint a ``--resume`` continues from.
        iteration: iterations done (the checkpoint's ``meta['iter']``).
        signal_name: the signal that stopped the run (``'SIGINT'``, ``'SIGTERM'``).
    """

    def __init__(self, checkpoint: str, iteration: int,
                 signal_name: str = 'SIGINT') -> None:
        super().__init__(f'training interrupted by {signal_name} after iteration '
                         f'{iteration}; saved {checkpoint}')
        self.checkpoint, self.iteration = checkpoint, iteration
        self.signal_name = signal_name

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 128 + its number
        (130 for SIGINT, 143 for SIGTERM), so a batch scheduler sees which one it was."""
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


# A repeat within this many seconds is the same interrupt: a terminal's Ctrl-C reaches
# each DDP rank twice, from the terminal and forwarded by torchrun, milliseconds apart.
REPEAT_WINDOW_S = 1.0


class InterruptSignals:
    """The process's SIGINT/SIGTERM handlers while a training run may be interrupted.

    A signal that arrives while the armed training loop's ``run`` is on the stack
    (its iterations, their data loading, validation) only sets :attr:`requested`,
    once (or, during the validation of an iteration already saved, raises
    :class:`TrainingInterrupted` at once: there is nothing to wait for); a second one (at least ``REPEAT_WINDOW_S`` later), or any signal outside
    that loop (building, pseudo-labelling, after a crash), goes to the handler that
    was there before (Python's: ``KeyboardInterrupt``), which is restored. Forked
    DataLoader workers inherit the handler and ignore the signal (the main process
    decides; a worker that died on Ctrl-C would fail the iteration being finished);
    for SIGTERM, which torch handles itself in its workers, see
    :func:`mmseg_saot.utils.worker_signals.sigterm_from_parent_only`.
    """

    def __init__(self) -> None:
        self.requested = False
        self.requested_at = 0.0
        self.signal_name = ''
        self.owner_pid: Optional[int] = None
        self.loop_code: Optional[CodeType] = None  # the armed loop's ``run``
        # (checkpoint, iteration) while validating an iteration already saved
        self.saved: Optional[Tuple[str, int]] = None
        self._previous: Dict[int, object] = {}
        self._patched_workers = False  # whether install() set the DataLoader worker rule

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    @property
    def armed(self) -> bool:
        return self.installed and self.loop_code is not None

    def install(self, signal_names: Sequence[str]) -> bool:
        """Install the handlers (main thread only; elsewhere nothing happens)."""
        if self.installed or threading.current_thread() is not threading.main_thread():
            return self.installed
        self.owner_pid, self.requested, self.loop_code = os.getpid(), False, None
        self.signal_name = ''
        for name in signal_names:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)
        if signal.SIGTERM in self._previous:
            self._patched_workers = worker_signals.sigterm_from_parent_only(True)
        return True

    def arm(self, loop) -> None:
        """Signals inside ``loop.run`` (an ``IterBasedTrainLoop``) request a stop."""
        self.loop_code = type(loop).run.__code__

    def stopped_at(self, checkpoint: str, iteration: int) -> TrainingInterrupted:
        """The exception that ends the run, naming the signal that asked for it (SIGINT
        when none is known)."""
        return TrainingInterrupted(checkpoint, iteration,
                                   signal_name=self.signal_name or 'SIGINT')

    def disarm(self) -> None:
        self.loop_code, self.saved = None, None

    def uninstall(self) -> None:
        """Restore the handlers that were there before :meth:`install`."""
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}
        if self._patched_workers:
            worker_signals.sigterm_from_parent_only(False)
            self._patched_workers = False
        self.loop_code, self.saved = None, None

    def _in_loop(self, frame) -> bool:
        while frame is not None:
            if frame.f_code is self.loop_code:
                return True
            frame = frame.f_back
        return False

    def _handle(self, number: int, frame) -> None:
        if os.getpid() != self.owner_pid:
            return  # a forked DataLoader worker: the main process decides
        now = time.monotonic()
        if self.requested and now - self.requested_at < REPEAT_WINDOW_S:
            return  # the same interrupt, forwarded (torchrun passes Ctrl-C on to ranks)
        if self.requested or self.loop_code is None or not self._in_loop(frame):
            self._pass_on(number, frame)
            return
        self.requested, self.requested_at = True, now
        self.signal_name = signal.Signals(number).name
        if self.saved is not None:  # a validation of a saved iteration: nothing to wait for
            _tell(f'{self.signal_name}: stopping now; {self.saved[0]} holds iteration '
                  f'{self.saved[1]} (the validation under way is dropped).')
            raise self.stopped_at(*self.saved)
        _tell(f'{self.signal_name}: finishing this iteration (and a validation under way), '
              f'then saving a checkpoint; send it again, {REPEAT_WINDOW_S:g} s or more later, '
              'to stop at once without saving.')

    def _pass_on(self, number: int, frame) -> None:
        """Restore the previous handlers and let the previous one handle ``number``."""
        previous = self._previous.get(number, signal.SIG_DFL)
        self.uninstall()
        if callable(previous):
            previous(number, frame)  # Python's SIGINT handler: KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), number)  # the default action (SIGTERM: terminate)


def _tell(message: str) -> None:
    try:  # the signal may have arrived inside a write to stderr
        print(f'\n{message}', file=sys.stderr, flush=True)
    except RuntimeError:
        pass


#: One set of handlers per process (signal handlers are process-wide).
SIGNALS = InterruptSignals()


@HOOKS.register_module()
class SaveOnInterruptHook(Hook):
    """On Ctrl-C or SIGTERM, end training at the iteration's end with a checkpoint.

    The first signal lets the current iteration (and the hooks after it: the EMA
    teacher update, the interval checkpoint) finish; this hook, the last to run
    after the iteration, then saves ``iter_<N>.pth`` with the optimizer and
    scheduler states (unless the ``CheckpointHook`` just saved that iteration),
    points ``work_dir/last_checkpoint`` at it and raises
    :class:`TrainingInterrupted`; ``tools/train.py`` turns that into a message with
    the ``--resume`` command. Under DDP the ranks agree on the request at every
    iteration (one all-reduce of a flag), so all stop at the same iteration. A
    validation inside training whose iteration is already saved (the CheckpointHook's
    interval) is not waited for: a signal during it, or just before it, stops at once;
    that validation, like the one after an iteration the signal stopped at, is recorded
    as owed (:mod:`~mmseg_saot.engine.hooks.pending_validation`) and a ``--resume``
    runs it before training on (``tools/train.py`` also after the last iteration).
    The validation of an iteration not saved yet is finished first, then that
    iteration is saved and the run stops. A signal before the first iteration stops at once, as without the hook (the pseudo-label
    cache keeps what it wrote). Iteration-based loops only: elsewhere the hook does
    nothing.

    ``tools/train.py`` installs the handlers before the runner builds its
    DataLoaders, so that forked workers ignore the signal; other entry points get
    them at ``before_run`` (workers started earlier keep Python's default).

    Args:
        signals: names of the signals handled.
    """

    priority = 'LOWEST'  # after EMATeacherHook and CheckpointHook

    def __init__(self, signals: Sequence[str] = ('SIGINT', 'SIGTERM')) -> None:
        known = [isinstance(getattr(signal, str(name), None), signal.Signals)
                 for name in signals]
        if not signals or not all(known):
            raise ConfigError(f'SaveOnInterruptHook: signals must be signal names such as '
                              f"('SIGINT', 'SIGTERM'), got {list(signals)}.")
        self.signals = tuple(signals)
        self._installed_here = False

    def install(self) -> None:
        """Install the signal handlers now (before DataLoader workers are forked)."""
        if not SIGNALS.installed:
            self._installed_here = SIGNALS.install(self.signals)

    def before_run(self, runner) -> None:
        self.install()

    def before_train(self, runner) -> None:
        if not isinstance(runner.train_loop, IterBasedTrainLoop):
            print_log('SaveOnInterruptHook: only iteration-based loops resume from a '
                      'mid-run checkpoint; Ctrl-C stops at once here.', logger='current')
            return
        if SIGNALS.installed:
            SIGNALS.arm(runner.train_loop)
        if runner.iter > 0 and runner.val_loop is not None and pending_on_any_rank(
                runner.work_dir, runner.iter):
            print_log(f'SaveOnInterruptHook: the validation after iteration {runner.iter} '
                      'was cut short when the run stopped; running it first.',
                      logger='current')
            runner.val_loop.run()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not SIGNALS.armed or not self._on_any_rank(SIGNALS.requested)[0]:
            return
        iteration = runner.iter + 1
        # skipped by stopping: --resume runs it
        self._save_and_stop(runner, iteration, owes_validation=validates_after(runner,
                                                                               iteration))

    def _save_and_stop(self, runner, iteration: int, owes_validation: bool) -> NoReturn:
        """Save ``iteration`` unless the CheckpointHook just did, record its validation
        as owed if ``owes_validation``, and raise :class:`TrainingInterrupted`."""
        SIGNALS.signal_name = self._signal_on_any_rank()  # for the log line and exit code
        path = self._checkpoint_path(runner, iteration)
        if not self._just_saved(runner, path):
            filename = f'iter_{iteration}.pth'
            path = osp.join(runner.work_dir, filename)
            runner.message_hub.update_info('last_ckpt', path)  # as CheckpointHook records
            # the iteration as meta: after a validation runner.iter already counts it,
            # and MMEngine's default (runner.iter + 1) made --resume skip one
            runner.save_checkpoint(runner.work_dir, filename, by_epoch=False,
                                   meta=dict(epoch=runner.epoch, iter=iteration))
            if dist.is_main_process():  # only once the checkpoint is complete
                atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), path)
        if owes_validation:
            mark_pending(runner.work_dir, iteration)
        print_log(f'SaveOnInterruptHook: {SIGNALS.signal_name or "a signal"} -> stopped '
                  f'after iteration {iteration}; checkpoint {path}.', logger='current')
        SIGNALS.disarm()
        raise SIGNALS.stopped_at(path, iteration)

    def before_val_epoch(self, runner) -> None:
        """Validation inside training of an iteration already saved: a signal during it
        (or one that came before it) stops at once, as nothing is left to save."""
        if not SIGNALS.armed:
            return
        path = self._checkpoint_path(runner, runner.iter)
        # every rank takes part (only the main process may see the checkpoint)
        requested, saved = self._on_any_rank(SIGNALS.requested,
                                             self._just_saved(runner, path))
        if saved:
            SIGNALS.saved = (path, runner.iter)
            mark_pending(runner.work_dir, runner.iter)  # until it finishes: a stop skips it
            if requested:
                SIGNALS.signal_name = self._signal_on_any_rank()
                SIGNALS.disarm()
                raise SIGNALS.stopped_at(path, runner.iter)

    def after_val_epoch(self, runner, metrics=None) -> None:
        """A validation inside training is done: not owed any more. A signal that came
        during the validation of an unsaved iteration (it was finished first) saves that
        iteration now and stops, rather than after one more training iteration."""
        SIGNALS.saved = None
        clear_pending(runner.work_dir, runner.iter)
        if SIGNALS.armed and self._on_any_rank(SIGNALS.requested)[0]:
            self._save_and_stop(runner, runner.iter, owes_validation=False)

    def after_train(self, runner) -> None:
        SIGNALS.disarm()

    def after_run(self, runner) -> None:
        if self._installed_here:
            SIGNALS.uninstall()
            self._installed_here = False

    @staticmethod
    def _checkpoint_path(runner, iteration: int) -> str:
        """Where the run's CheckpointHook saves ``iteration`` (its ``out_dir``, which its
        ``before_train`` resolved, and its ``filename_tmpl``); ``work_dir/iter_<N>.pth``
        without one."""
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook) and hook.out_dir:
                name = hook.filename_tmpl.format(iteration)
                backend = getattr(hook, 'file_backend', None)
                return (backend.join_path(hook.out_dir, name) if backend is not None
                        else osp.join(hook.out_dir, name))
        return osp.join(runner.work_dir, f'iter_{iteration}.pth')

    @staticmethod
    def _just_saved(runner, path: str) -> bool:
        """Whether this run's CheckpointHook saved ``path`` last (its ``last_ckpt`` in the
        message hub, set on every rank). Not ``work_dir/last_checkpoint``: an earlier
        run in the same folder may have left it naming a checkpoint of the same
        iteration, which would then be kept instead of this run's."""
        named = runner.message_hub.get_info('last_ckpt')
        return isinstance(named, str) and osp.abspath(named) == osp.abspath(path)

    @staticmethod
    def _signal_on_any_rank() -> str:
        """The signal every rank reports stopping on: the highest-numbered one any rank
        received (SIGTERM over SIGINT: a scheduler's stop wins), so that all ranks exit
        with the same code. Every rank must call it (a collective under DDP)."""
        name = SIGNALS.signal_name
        number = torch.tensor([float(getattr(signal, name)) if name else 0.0])
        if dist.get_world_size() > 1:
            dist.all_reduce(number, op='max')
        return signal.Signals(int(number.item())).name if number.item() else name

    @staticmethod
    def _on_any_rank(*flags: bool) -> Tuple[bool, ...]:
        """Each flag, true if it is true on any rank (so all ranks act alike)."""
        values = torch.tensor([float(flag) for flag in flags])
        if dist.get_world_size() > 1:
            dist.all_reduce(values, op='max')
        return tuple(bool(v > 0) for v in values)
