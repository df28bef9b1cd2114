"""``type=`` functions for the tools' numeric, device and output-file options: a bad
value is a usage error.

argparse prints an :class:`argparse.ArgumentTypeError` as
``tool: error: argument --nproc: must be an integer >= 1, got "0"`` and exits with
code 2, before any work is done (a negative ``--num-overlays`` used to fail after the
whole labelling pass).
"""
import argparse
import math
import os.path as osp
from typing import Callable, List

from mmseg_saot.utils.errors import UserInputError
from mmseg_saot.utils.paths import ensure_folder


def _number(kind, text: str, lowest, inclusive: bool):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or \
            (value < lowest if inclusive else value <= lowest):
        name = 'an integer' if kind is int else 'a number'
        bound = '>=' if inclusive else '>'
        raise argparse.ArgumentTypeError(f'must be {name} {bound} {lowest:g}, got "{text}"')
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _number(int, text, 1, True)


def int_at_least(lowest: int) -> Callable[[str], int]:
    """``type=`` of an integer option with a lower bound other than 0 or 1 (e.g. 2 source
    images for a labeller that trains on pairs of them).

    Args:
        lowest: the smallest value allowed.

    Returns:
        A function of the option's text returning the integer; it raises
        :class:`argparse.ArgumentTypeError` (``must be an integer >= 2, got "1"``).
    """
    def parse(text: str) -> int:
        return _number(int, text, lowest, True)
    parse.__name__ = f'int_at_least_{lowest}'
    return parse


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _number(int, text, 0, True)


def _int_list(text: str, lowest: int) -> List[int]:
    """The comma-separated integers >= ``lowest`` in ``text``; an
    :class:`argparse.ArgumentTypeError` naming the first bad item otherwise."""
    rule = f'comma-separated integers >= {lowest}'
    if not text.strip():
        raise argparse.ArgumentTypeError(f'must be {rule}, got "{text}"')
    values = []
    for item in text.split(','):
        try:
            values.append(_number(int, item.strip(), lowest, True))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f'must be {rule}; "{item}" in "{text}" is not one') from None
    return values


def positive_int_list(text: str) -> List[int]:
    """Comma-separated integers >= 1, e.g. ``1024,4096`` (sizes, dimensions)."""
    return _int_list(text, 1)


def non_negative_int_list(text: str) -> List[int]:
    """Comma-separated integers >= 0, e.g. ``0,1,2`` (seeds)."""
    return _int_list(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(float, text, 0.0, False)


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(float, text, 0.0, True)


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
    import torch  # only when a tool parses --device
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


def output_file(path: str) -> str:
    """``type=`` of the benchmarks' ``--out``: a file that can be written, checked before
    the minutes of measuring that precede the write (its folder is created here).

    Raises:
        argparse.ArgumentTypeError: the path is a folder, or its folder cannot be made
            or written (a file in the way, no permission).
    """
    if osp.isdir(path) or path.endswith(('/', osp.sep)):  # a folder, or one to be made
        raise argparse.ArgumentTypeError(f'"{path}" is a folder; give a file name in it')
    try:
        ensure_folder(osp.dirname(osp.abspath(path)), option=f'"{path}"')
    except UserInputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return path
