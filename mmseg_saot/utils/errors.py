"""Errors caused by user input; the tools print them without a traceback."""


class UserInputError(Exception):
    """A file, folder or option supplied by the user is wrong.

    The message names the file or option and says how to fix it. Tools
    catch this class and print the message alone.
    """


class WeightsError(UserInputError, ValueError):
    """Backbone weights are missing, unreadable or do not fit the model."""
