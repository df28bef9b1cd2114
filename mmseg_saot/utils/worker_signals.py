"""SIGTERM in DataLoader workers: the main process decides, as for Ctrl-C.

Used by :func:`mmseg_saot.utils.interrupts.interrupt_exits` (every tool) and by the training
run's :class:`~mmseg_saot.engine.hooks.SaveOnInterruptHook`.
"""
import os
import signal
import threading

_STATE = {'rule_on': False, 'mask_before_fork': None}


def sigterm_from_parent_only(enable: bool) -> bool:
    """Make DataLoader workers forked from now on ignore a SIGTERM that their parent did
    not send (``enable``), or stop doing so; return whether this call changed anything
    (so that the caller that set the rule is the one that removes it).

    A worker inherits the main process's handlers, but torch then gives it its own
    SIGTERM handler, which ends the worker unless its parent sent the signal: a SIGTERM
    to the whole process group (a batch scheduler's ``scancel``, ``timeout``, ``kill --
    -PGID``) killed the workers, and torch's SIGCHLD handler in the main process raised
    ``RuntimeError: DataLoader worker ... is killed by signal: Terminated`` somewhere in
    the iteration being finished, so no checkpoint was saved. Wrapping torch's
    ``_set_worker_signal_handlers`` (run in each worker after the fork) restores the rule
    that holds for Ctrl-C: the main process decides. A SIGTERM from the main process
    itself (its shutdown of daemonic workers) still ends a worker
    (:func:`_sigterm_only_from_parent`); ignoring every SIGTERM made that shutdown wait
    forever.
    """
    from torch.utils.data._utils import signal_handling
    current = getattr(signal_handling, '_set_worker_signal_handlers', None)
    original = getattr(current, 'wrapped_by_saot', None)
    if current is None or enable == (original is not None):
        return False  # not in this torch, or already as asked
    _STATE['rule_on'] = enable
    if not enable:
        signal_handling._set_worker_signal_handlers = original
        return True

    def set_worker_signal_handlers(*args, **kwargs):
        current(*args, **kwargs)
        _sigterm_only_from_parent()
    set_worker_signal_handlers.wrapped_by_saot = current
    signal_handling._set_worker_signal_handlers = set_worker_signal_handlers
    return True


def _sigterm_only_from_parent() -> None:
    """In a DataLoader worker: end on a SIGTERM from the main process (its shutdown of
    the workers, as torch's own handler does), ignore one from anyone else.

    A Python handler cannot see who sent a signal, so SIGTERM is blocked in the worker
    and a daemon thread takes each one with ``sigwaitinfo``, which names the sender.
    A native thread can exist in the child before the worker's first line (seen when
    the parent runs torch with 2 threads); it is blocked too: :func:`_block_for_fork`.
    """
    parent = os.getppid()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def wait() -> None:
        while True:
            if signal.sigwaitinfo({signal.SIGTERM}).si_pid == parent:
                os._exit(0)
    threading.Thread(target=wait, name='sigterm_from_parent', daemon=True).start()


def _block_for_fork() -> None:
    """Before a fork while the rule is on: block SIGTERM in the forking thread, so that
    the child starts with it blocked, and so do threads created in it before a worker
    blocks it itself (one SIGTERM-accepting thread would let torch's handler run)."""
    if _STATE['rule_on']:
        _STATE['mask_before_fork'] = signal.pthread_sigmask(signal.SIG_BLOCK,
                                                            {signal.SIGTERM})


def _restore_after_fork() -> None:
    """After the fork, in the parent and in the child's thread: the mask from before
    (children that are no DataLoader worker, such as a Pool's, take SIGTERM again)."""
    mask, _STATE['mask_before_fork'] = _STATE['mask_before_fork'], None
    if mask is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


os.register_at_fork(before=_block_for_fork, after_in_parent=_restore_after_fork,
                    after_in_child=_restore_after_fork)
