"""The options several `raft` commands share, declared once (those `ratf` takes too, the
persona argument and --threads, are in raft.console)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from raft.errors import UsageError

# An embedder that reads the store: another one's vectors would not match.
STORE_EMBEDDER = "Must match the one that built the store."


def backend_option(role: str, help: str) -> Callable[[Any], Any]:
    """`--generator SPEC`, `--embedder SPEC`, ...: a backend spec for one role of this command
    (default: RAFT_<ROLE>, else persona.toml, else local)."""
    return click.option(f"--{role}", metavar="SPEC", help=help)


def iso_date(value: str | None) -> str | None:
    """A --before or --date value as YYYY-MM-DD; None when not given."""
    from raft.dates import normalize_date

    if value and not normalize_date(value):
        raise UsageError(f"not a date: {value!r} (use YYYY-MM-DD)")
    return normalize_date(value) if value else None
