"""utils/worker_signals.py: DataLoader workers take SIGTERM only from their parent."""
import os
import signal
import subprocess
import time

import torch
from torch.utils.data import DataLoader, Dataset

from mmseg_saot.utils.worker_signals import sigterm_from_parent_only


class WorkerPid(Dataset):
    def __len__(self):
        return 1000

    def __getitem__(self, index):
        return os.getpid()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_the_rule_is_set_once_and_removed_by_whoever_set_it():
    from torch.utils.data._utils import signal_handling
    original = signal_handling._set_worker_signal_handlers
    assert sigterm_from_parent_only(True) is True
    try:
        assert sigterm_from_parent_only(True) is False  # already set: nothing to undo later
        assert signal_handling._set_worker_signal_handlers is not original
    finally:
        assert sigterm_from_parent_only(False) is True
    assert signal_handling._set_worker_signal_handlers is original
    assert sigterm_from_parent_only(False) is False


def test_a_worker_ignores_another_process_sigterm_and_ends_on_its_parents():
    sigterm_from_parent_only(True)
    try:
        batches = iter(DataLoader(WorkerPid(), batch_size=1, num_workers=1))
        worker = int(next(batches))
    finally:
        sigterm_from_parent_only(False)
    subprocess.run(['kill', '-TERM', str(worker)], check=True)  # as scancel or timeout
    time.sleep(0.5)
    assert alive(worker)
    assert int(next(batches)) == worker  # still serving batches
    os.kill(worker, signal.SIGTERM)  # the parent's: as torch's shutdown of its workers
    deadline = time.time() + 10
    while time.time() < deadline and alive(worker):
        os.waitpid(worker, os.WNOHANG)
        time.sleep(0.05)
    assert not alive(worker)
    del batches
    torch.utils.data.get_worker_info()  # (the main process is no worker)
