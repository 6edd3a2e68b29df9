"""Errors a user can act on. The CLIs print them as one line and exit non-zero."""


class RaftError(Exception):
    """A failure with a message meant for the user; `exit_code` is the process status."""

    exit_code = 1


class UsageError(RaftError):
    """Bad input on the command line (a persona name, a flag value)."""

    exit_code = 2
