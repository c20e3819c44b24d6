"""The one exception type for bad input."""


class InputError(ValueError):
    """Bad user input: the message says what was expected, what came, which file, and the fix.

    The command-line entry points turn it into one line on stderr and a non-zero exit.
    """
