"""Errors a user can act on. The CLIs print them as one line and exit non-zero."""


class RaftError(Exception):
    """A failure with a message meant for the user; `exit_code` is the process status."""

    exit_code = 1


class UsageError(RaftError):
    """The command was asked wrongly: a bad name, flag value or input file, or a stage run
    before the stage it needs (the message names the command to run first). Exit 2;
    a command that was asked rightly and failed exits 1."""

    exit_code = 2
