"""run_child: a Ctrl-C waits for the child, which gets the interrupt once."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

CHILD = textwrap.dedent("""
    import signal, sys, time
    got = []
    signal.signal(signal.SIGINT, lambda *a: got.append('INT'))
    signal.signal(signal.SIGTERM, lambda *a: got.append('TERM'))
    print('ready', flush=True)
    deadline = time.time() + 20
    while not got and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.8)  # 'saving a checkpoint': subprocess.run killed it after 0.25 s
    time.sleep(0.2)
    print('saved', got, flush=True)
    sys.exit(7)
""")

PARENT = textwrap.dedent("""
    import sys
    from mmseg_saot.utils.child_process import run_child
    try:
        run_child([sys.executable, '-c', {child!r}])
    except KeyboardInterrupt:
        print('parent: interrupted after the child ended', flush=True)
        sys.exit(130)
""")


def default_sigint():
    """In the child before exec: Ctrl-C as in a terminal. A suite started in the
    background (``cmd &`` in a script) ignores SIGINT, and its children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(sys.platform == 'win32', reason='POSIX signals')
@pytest.mark.parametrize('to_group', [True, False])
def test_ctrl_c_lets_the_child_finish_and_reaches_it_once(tmp_path, to_group):
    parent = subprocess.Popen([sys.executable, '-c', PARENT.format(child=CHILD)],
                              stdout=subprocess.PIPE, text=True, start_new_session=True,
                              preexec_fn=default_sigint)
    assert parent.stdout.readline().strip() == 'ready'
    time.sleep(0.3)
    if to_group:  # a terminal's Ctrl-C: the parent's whole process group
        os.killpg(parent.pid, signal.SIGINT)
    else:
        parent.send_signal(signal.SIGINT)
    out, _ = parent.communicate(timeout=60)
    assert "saved ['INT']" in out  # not killed, and one interrupt, not two
    assert 'parent: interrupted after the child ended' in out
    assert parent.returncode == 130


def test_the_exit_code_is_returned():
    from mmseg_saot.utils.child_process import run_child
    assert run_child([sys.executable, '-c', 'import sys; sys.exit(3)']) == 3
