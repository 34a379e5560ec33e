"""Errors raised on bad input at the edge of the system."""


class DeleverInputError(ValueError):
    """Bad scenario, data file or option.

    The message is one line naming the file, row or field and what was expected. The CLI prints it
    and exits with code 2; no partial run folder is left behind.
    """
