"""Errors caused by user input; the tools print them without a traceback."""


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
    names the component and the option (``MLPHead: num_layers must be >= 1``), and
    the tools print it without a traceback.
    """


def check_positive_int(component: str, name: str, value) -> int:
    """``value`` if it is an integer >= 1 (a bool is not), else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f'{component}: {name} must be an integer >= 1, got {value!r}.')
    return value
