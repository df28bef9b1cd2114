"""Run a child process to its end, Ctrl-C included."""
import signal
import subprocess
from typing import List


def run_child(command: List[str], **popen_kwargs) -> int:
    """Run ``command`` and return its exit code, after it has ended whatever happens here.

    ``subprocess.run`` kills its child 0.25 s after a ``KeyboardInterrupt``: a training
    run then died before saving the checkpoint that its own SIGINT handling writes. Here
    the child runs in a process group of its own, so a terminal's Ctrl-C reaches this
    process alone; each interrupt of the wait (SIGINT as ``KeyboardInterrupt``, any other
    exception, e.g. a SIGTERM turned into one by ``interrupt_exits``) is passed on to the
    child once (SIGINT, else SIGTERM), the wait goes on until the child has ended, and
    then the first interrupt is raised again.

    Args:
        command: the program and its arguments.
        **popen_kwargs: passed to :class:`subprocess.Popen` (``cwd``, ``stdout``, ...).
    """
    child = subprocess.Popen(command, process_group=0, **popen_kwargs)
    first = None
    while True:
        try:
            code = child.wait()
            break
        except BaseException as interrupt:  # noqa: B902 - passed on, then re-raised
            first = first or interrupt
            if child.poll() is None:
                child.send_signal(signal.SIGINT if isinstance(interrupt, KeyboardInterrupt)
                                  else signal.SIGTERM)
    if first is not None:
        raise first
    return code
