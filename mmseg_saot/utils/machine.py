"""One line naming the machine a benchmark ran on, for the tables it writes."""
import argparse
import os
import platform

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


def device_option(value: str) -> str:
    """``type=`` of the tools' ``--device`` options: a device this machine has.

    Args:
        value: the option's text, e.g. ``'cpu'``, ``'cuda'`` or ``'cuda:1'``.

    Returns:
        ``value`` unchanged.

    Raises:
        argparse.ArgumentTypeError: not a torch device, not CPU or CUDA, or a GPU this
            machine does not have; argparse prints it as a usage error naming the option.
    """
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(
            f'"{value}" is not a device; use cpu, cuda or cuda:N') from None
    if device.type == 'cpu':
        return value
    if device.type != 'cuda':
        raise argparse.ArgumentTypeError(f'"{value}": only cpu and cuda are supported')
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise argparse.ArgumentTypeError(
            f'"{value}": this machine has no usable CUDA GPU '
            '(torch.cuda.is_available() is False); use --device cpu')
    if device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(
            f'"{value}": this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}')
    return value
