"""``type=`` functions for the tools' numeric options: a bad value is a usage error.

argparse prints an :class:`argparse.ArgumentTypeError` as
``tool: error: argument --nproc: must be an integer >= 1, got "0"`` and exits with
code 2, before any work is done (a negative ``--num-overlays`` used to fail after the
whole labelling pass).
"""
import argparse
import math


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


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _number(int, text, 0, True)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(float, text, 0.0, False)


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(float, text, 0.0, True)
