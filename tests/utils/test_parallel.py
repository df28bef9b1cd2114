"""map_with_progress: results on worker processes; Ctrl-C left to the main process."""
import os
import signal
import subprocess
import sys
import time

from mmseg_saot.utils.parallel import map_with_progress


def default_sigint():
    """In the child before exec: Ctrl-C as in a terminal (a suite started in the
    background ignores SIGINT, and its children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _worker_sigint(_):
    return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def _square(x):
    return x * x


def test_results_and_workers_that_ignore_ctrl_c():
    assert sorted(map_with_progress(_square, list(range(10)), nproc=2, desc='t')) == \
        [x * x for x in range(10)]
    # each worker printed its own KeyboardInterrupt traceback on Ctrl-C
    assert all(map_with_progress(_worker_sigint, list(range(8)), nproc=2, desc='t',
                                 chunksize=1))


def test_a_converter_interrupted_exits_130_with_one_message(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tool = os.path.join(root, 'tools', 'dataset_converters', 'make_demo_data.py')
    proc = subprocess.Popen([sys.executable, tool, '--out', str(tmp_path / 'demo'),
                             '--num-source', '400', '--num-target-train', '400'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=default_sigint)
    deadline = time.time() + 60
    while not (tmp_path / 'demo').exists() and time.time() < deadline:
        time.sleep(0.1)  # past the imports: the tool is writing scenes
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert 'Traceback' not in err and 'Interrupted.' in err
    assert not (tmp_path / 'demo' / 'DONE.json').exists()


def _dies_on_3(x):
    if x == 3:
        os._exit(1)  # as a worker killed for memory
    return x


def _failing_initializer():
    raise RuntimeError('cannot start')


def test_a_worker_that_dies_or_cannot_start_is_an_error_not_a_hang():
    # multiprocessing.Pool waited forever for a killed worker's results, and started
    # new workers without end when the initializer failed
    import pytest

    from mmseg_saot.utils.errors import UserInputError
    start = time.time()
    with pytest.raises(UserInputError, match=r'^t: a worker process died .* --nproc 1'):
        list(map_with_progress(_dies_on_3, list(range(8)), nproc=2, desc='t', chunksize=1))
    with pytest.raises(UserInputError, match='a worker process died'):
        list(map_with_progress(_square, list(range(8)), nproc=2, desc='t',
                               initializer=_failing_initializer))
    assert time.time() - start < 60


def test_results_come_in_the_items_order():
    assert list(map_with_progress(_square, list(range(20)), nproc=2, desc='t',
                                  chunksize=3)) == [x * x for x in range(20)]
