"""The device scripts' shared set-up (tools/device_env.sh), checked without a GPU."""
import glob
import os
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_every_device_script_parses():
    scripts = sorted(glob.glob(osp.join(REPO, 'tools', 'device_*.sh')))
    assert len(scripts) >= 4
    for script in scripts:
        subprocess.run(['bash', '-n', script], check=True)


def test_describe_machine_writes_the_gpu_and_versions(tmp_path):
    fake_bin = tmp_path / 'bin'
    fake_bin.mkdir()
    smi = fake_bin / 'nvidia-smi'
    smi.write_text('#!/bin/sh\necho "Fake GPU, 1024 MiB"\n')
    smi.chmod(0o755)
    python3 = fake_bin / 'python3'  # the interpreter running the tests, venv included
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python3.chmod(0o755)
    out = tmp_path / 'out'
    env = dict(os.environ, OUT=str(out), PATH=f'{fake_bin}{os.pathsep}{os.environ["PATH"]}')
    done = subprocess.run(
        ['bash', '-c', 'set -u; source tools/device_env.sh; describe_machine torch; '
         'echo "PYTHONPATH=$PYTHONPATH"'],
        cwd=REPO, env=env, capture_output=True, text=True, check=True)
    import torch
    expected = f'Fake GPU, 1024 MiB\ntorch {torch.__version__}\n'
    assert (out / 'machine.txt').read_text() == expected
    assert done.stdout == expected + f'PYTHONPATH=/tmp/site:{REPO}\n'
