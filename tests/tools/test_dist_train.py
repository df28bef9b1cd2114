"""tools/dist_train.sh: two gloo processes on CPU train both stages; one teacher."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import torch
from tiny_uda import tiny_uda_config, write_tiny_uda_data

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_keep_identical_teachers(python, tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data')
    config = tmp_path / 'tiny_ddp.py'
    config.write_text(tiny_uda_config(data) + '''
custom_imports = dict(imports=['mmseg_saot', 'rank_state_hook'], allow_failed_imports=False)
custom_hooks = custom_hooks + [dict(type='RankStateHook')]
train_cfg = dict(max_iters=5, val_interval=5)
''')
    work_dir = tmp_path / 'work'
    env = dict(os.environ, PYTHON=python, PORT=str(free_port()), OMP_NUM_THREADS='1',
               PYTHONPATH=f'{REPO / "tests" / "tools"}:{os.environ.get("PYTHONPATH", "")}')
    result = subprocess.run(['bash', str(REPO / 'tools' / 'dist_train.sh'), str(config), '2',
                             '--work-dir', str(work_dir)], env=env, capture_output=True,
                            text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'stage 2 (EMA-teacher self-training) begins at iteration 3' in log
    assert 'teacher/mIoU' in log and 'student/mIoU' in log
    ranks = [torch.load(work_dir / f'heads_rank{r}.pth', weights_only=True) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key, value in ranks[0].items():
        if key.startswith('teacher_head.'):  # parameters and BN statistics
            assert torch.equal(value, ranks[1][key]), key
        elif not key.split('.')[-1].startswith(('running_', 'num_batches')):
            assert torch.equal(value, ranks[1][key]), key  # DDP-synchronised student
    # the teacher moved away from its initial copy: it is an average, not the student
    assert any(not torch.equal(ranks[0][k], ranks[0][k.replace('teacher_head', 'decode_head')])
               for k in ranks[0] if k.startswith('teacher_head') and 'weight' in k)


def test_ctrl_c_stops_every_rank_at_the_same_iteration_with_a_checkpoint(python, tmp_path):
    data = write_tiny_uda_data(tmp_path / 'data')
    config = tmp_path / 'tiny_ddp.py'
    config.write_text(tiny_uda_config(data))
    work_dir = tmp_path / 'work'
    env = dict(os.environ, PYTHON=python, PORT=str(free_port()), OMP_NUM_THREADS='1')
    # a session of its own: Ctrl-C reaches torchrun and both ranks, as in a terminal
    process = subprocess.Popen(
        ['bash', str(REPO / 'tools' / 'dist_train.sh'), str(config), '2', '--work-dir',
         str(work_dir), '--cfg-options', 'train_cfg.max_iters=100000'], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    pointer, deadline = work_dir / 'last_checkpoint', time.time() + 600
    while not (pointer.exists() and pointer.read_text().strip().endswith('iter_2.pth')):
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    log, _ = process.communicate(timeout=300)
    # each rank got it twice (terminal and torchrun's forward): one request per rank
    assert log.count('SIGINT: finishing this iteration') == 2, log[-4000:]
    stopped = [line for line in log.splitlines() if line.startswith('Stopped after')]
    assert len(stopped) == 1, log[-4000:]  # rank 0 speaks for both
    iteration = int(stopped[0].split()[3].rstrip(';'))
    checkpoint = work_dir / f'iter_{iteration}.pth'
    assert checkpoint.exists() and pointer.read_text() == str(checkpoint)
    assert (f'tools/dist_train.sh {config} NUM_GPUS --cfg-options train_cfg.max_iters=100000 '
            f'--work-dir {work_dir} --resume') in stopped[0]
    saved = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert saved['meta']['iter'] == iteration


@pytest.mark.parametrize('script, args', [('dist_train.sh', ['2']),
                                          ('dist_test.sh', ['x.pth', '2'])])
@pytest.mark.parametrize('port', ['99999', 'abc', '0'])
def test_a_bad_port_is_a_usage_error(script, args, port):
    result = subprocess.run(['bash', str(REPO / 'tools' / script), 'configs/saot/demo.py',
                             *args], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, PORT=port))
    assert result.returncode == 2
    assert result.stderr == (f'error: PORT must be a port number 1-65535 (the rendezvous port '
                             f'of the processes), got "{port}"\n')


@pytest.mark.parametrize('script, args', [('dist_train.sh', ['abc']),
                                          ('dist_test.sh', ['x.pth', '0'])])
def test_a_bad_process_count_is_a_usage_error(script, args):
    result = subprocess.run(['bash', str(REPO / 'tools' / script), 'configs/saot/demo.py',
                             *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith('error: NUM_GPUS must be a whole number >= 1')
