"""Errors caused by user input; the tools print them without a traceback."""
from typing import Optional


class UserInputError(Exception):
    """A file, folder or option supplied by the user is wrong.

    The message names the file or option and says how to fix it. Tools
    catch this class and print the message alone.
    """


class WeightsError(UserInputError, ValueError):
    """Backbone weights are missing, unreadable or do not fit the model."""


class ConfigError(UserInputError, ValueError):
    """An option of a config has a bad value.

    Raised by the plugin's registered components when they are built; the message
    names the component and the option (``MLPHead: num_layers must be an integer
    >= 1, got 0.``), and the tools print it without a traceback.
    """


def integer_problem(name: str, value, minimum: int) -> Optional[str]:
    """``'<name> must be an integer >= <minimum>, got <value>'`` unless ``value`` is one
    (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f'{name} must be an integer >= {minimum}, got {value!r}'
    return None


def number_problem(name: str, value, *, above: Optional[float] = None,
                   at_least: Optional[float] = None, below: Optional[float] = None,
                   at_most: Optional[float] = None) -> Optional[str]:
    """``'<name> must be a number > 0, got -1'`` unless ``value`` is a real number (not a
    bool) within the given bounds, else None (``inf`` passes where no upper bound is given;
    NaN never)."""
    bounds = [(above, '>', lambda v, b: v > b), (at_least, '>=', lambda v, b: v >= b),
              (below, '<', lambda v, b: v < b), (at_most, '<=', lambda v, b: v <= b)]
    wanted = [(b, sign, ok) for b, sign, ok in bounds if b is not None]
    real = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    if not real or not all(ok(value, b) for b, _, ok in wanted):
        rule = ' and '.join(f'{sign} {b:g}' for b, sign, _ in wanted)
        return f'{name} must be a number {rule}, got {value!r}'
    return None


def check_integer(component: str, name: str, value, minimum: int) -> int:
    """``value`` if it is an integer >= ``minimum`` (a bool is not), else a
    :class:`ConfigError` naming ``component`` and ``name``."""
    problem = integer_problem(name, value, minimum)
    if problem:
        raise ConfigError(f'{component}: {problem}.')
    return value


def check_positive_int(component: str, name: str, value) -> int:
    """``value`` if it is an integer >= 1 (a bool is not), else a :class:`ConfigError`."""
    return check_integer(component, name, value, minimum=1)


def check_number(component: str, name: str, value, *, above: Optional[float] = None,
                 at_least: Optional[float] = None, below: Optional[float] = None,
                 at_most: Optional[float] = None) -> float:
    """``value`` if it is a real number (not a bool) within the given bounds, else a
    :class:`ConfigError` such as ``SAOTLabeler: epsilon must be a number > 0, got -1.``
    (``inf`` passes where no upper bound is given; NaN never)."""
    problem = number_problem(name, value, above=above, at_least=at_least, below=below,
                             at_most=at_most)
    if problem:
        raise ConfigError(f'{component}: {problem}.')
    return value


def load_failure_reason(err: BaseException, limit: int = 200) -> str:
    """One line saying why ``torch.load`` (or a safetensors read) failed: the
    weights-only unpickler's own reason, without torch's advice to turn ``weights_only``
    off or its parenthetical hints, cut at a word to at most ``limit`` characters."""
    text = str(err)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    line = lines[0].split(' was not an allowed global')[0]
    line = line.split(' (this is a common error')[0]
    if len(line) > limit:
        line = line[:limit].rsplit(' ', 1)[0] + ' ...'
    return line


def error_reason(err: BaseException) -> str:
    """``'<ErrorType>: <first line of its message>'`` (the type alone if it has none)."""
    text = str(err).splitlines()[0] if str(err) else ''
    return f'{type(err).__name__}: {text}' if text else type(err).__name__
