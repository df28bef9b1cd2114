"""Ctrl-C and SIGTERM in a tool: a one-line message and the shell's exit code.

Only the standard library and :mod:`mmseg_saot.utils.worker_signals` (torch, imported
when a DataLoader worker needs it): the benchmarks that run on a machine with torch
alone use it too.
"""
import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, Union

from mmseg_saot.utils import worker_signals


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch scheduler's preemption) in the main process
    inside :func:`interrupt_exits`: a ``KeyboardInterrupt``, so that what cleans up after
    Ctrl-C (``finally`` blocks, atomic writes, DataLoader shutdown) does so after it too."""


def _raise_terminated(owner_pid: int):
    """A SIGTERM handler: :class:`Terminated` in process ``owner_pid`` (a second SIGTERM
    gets the default action); a forked child that inherited it (a Pool worker, ended by
    ``Pool.terminate``) gets the default action at once. DataLoader workers never run
    it: torch gives them their own handler (see :mod:`mmseg_saot.utils.worker_signals`)."""
    def handle(number, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if os.getpid() != owner_pid:
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()
    return handle


def _text(message: Union[str, Callable[[], str]]) -> str:
    return message() if callable(message) else message


@contextlib.contextmanager
def interrupt_exits(message: Union[str, Callable[[], str]] = '') -> Iterator[None]:
    """Turn Ctrl-C (``KeyboardInterrupt``) into ``Interrupted. <message>`` on stderr and
    exit code 130 (the shell's code for SIGINT), and SIGTERM into ``Terminated (SIGTERM).
    <message>`` and code 143, instead of a traceback or a silent end. ``message`` may be
    a function, called at the stop (for what depends on how far the work got).

    Inside the block SIGTERM raises :class:`Terminated` (main thread only, where SIGTERM
    has its default action: a handler already installed stays): without this the default
    action ended a tool at once, with no word and no cleanup. A handler installed later
    (a training run's :class:`~mmseg_saot.engine.hooks.SaveOnInterruptHook`, which saves
    a checkpoint) takes precedence and passes signals outside its loop on to this one.
    """
    # (a handler already there, an enclosing block's or SaveOnInterruptHook's, stays)
    installed = (threading.current_thread() is threading.main_thread()
                 and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None))
    if installed:
        signal.signal(signal.SIGTERM, _raise_terminated(os.getpid()))
    # DataLoader workers leave SIGTERM to this process: one sent to the whole process
    # group would otherwise end them first, and torch would raise a RuntimeError here
    patched_workers = worker_signals.sigterm_from_parent_only(True)
    try:
        yield
    except Terminated:
        print(f'Terminated (SIGTERM). {_text(message)}'.rstrip(), file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        print(f'Interrupted. {_text(message)}'.rstrip(), file=sys.stderr)
        sys.exit(130)
    finally:
        if installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if patched_workers:
            worker_signals.sigterm_from_parent_only(False)
