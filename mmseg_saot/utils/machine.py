"""One line naming the machine a benchmark ran on, for the tables it writes; its free
memory, for a benchmark's check before it allocates."""
import os
import platform
from typing import Optional

import torch


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s ``model name``), else what ``platform`` knows."""
    try:
        with open('/proc/cpuinfo') as fh:
            for line in fh:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown CPU'


def available_memory() -> Optional[int]:
    """Bytes of memory new allocations can get without swapping (``/proc/meminfo``'s
    ``MemAvailable``, else the free pages), or None where neither is known."""
    try:
        with open('/proc/meminfo') as fh:
            for line in fh:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError, AttributeError):
        return None


def describe_device(device: str) -> str:
    """The accelerator or CPU that ``device`` runs on, for a benchmark's ``Machine:`` line.

    Args:
        device: a torch device string, e.g. ``'cpu'``, ``'cuda'`` or ``'cuda:1'``.

    Returns:
        The GPU's name for a CUDA device (e.g. ``'NVIDIA H100 80GB HBM3'``), else the CPU
        model and the cores this process may use (e.g. ``'AMD EPYC 7B13, 2 cores'``).
    """
    if torch.device(device).type == 'cuda':
        return torch.cuda.get_device_name(device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return f'{cpu_name()}, {cores} cores'

