"""A budget for each input file, spent over the whole file whatever its number of pages,
chapters or paragraphs: how much text it may give, how much its parts may decode to before
they are parsed, how many parts it may have, and how long it may take to read.

Each limit is settable in the environment; the defaults leave a 1,000-page book room to spare.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from raft.errors import UsageError

MB = 1 << 20
TEXT_VARIABLE, TEXT_DEFAULT = "RAFT_MAX_FILE_TEXT_MB", 50.0
DECODED_VARIABLE, DECODED_DEFAULT = "RAFT_MAX_FILE_DECODED_MB", 100.0
PARTS_VARIABLE, PARTS_DEFAULT = "RAFT_MAX_FILE_PARTS", 200_000.0
SECONDS_VARIABLE, SECONDS_DEFAULT = "RAFT_MAX_FILE_SECONDS", 300.0


class OverBudget(Exception):
    """A file went past one of its budgets; the message says which, and how to raise it."""


@dataclass(frozen=True)
class Limits:
    text_mb: float  # extracted text, in millions of characters (MB of ASCII)
    decoded_mb: float  # what the file's parts decompress to before they are parsed
    parts: float  # pages, chapters, paragraphs: each costs its reader time and memory
    seconds: float  # wall time to read the file


def file_limits() -> Limits:
    """The per-file budgets set in the environment, else the defaults; a bad value is a
    usage error naming the variable."""
    return Limits(
        _setting(TEXT_VARIABLE, TEXT_DEFAULT),
        _setting(DECODED_VARIABLE, DECODED_DEFAULT),
        _setting(PARTS_VARIABLE, PARTS_DEFAULT),
        _setting(SECONDS_VARIABLE, SECONDS_DEFAULT),
    )


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{name} must be a positive number, not {raw!r}")
    return value


class FileBudget:
    """What one file has spent so far; each `spend_*` or `check_time` raises `OverBudget` once
    a limit is passed, and again at every later call."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or file_limits()
        self.text = 0
        self.decoded = 0
        self.parts = 0
        self.deadline = time.monotonic() + self.limits.seconds

    def spend_text(self, characters: int) -> None:
        """Count extracted text."""
        self.text += characters
        if self.text > self.limits.text_mb * MB:
            what = f"more than {_shown(self.limits.text_mb)} MB of text"
            raise OverBudget(_over(what, TEXT_VARIABLE))

    def spend_decoded(self, size: int) -> None:
        """Count bytes about to be decompressed or parsed, before the work is done."""
        self.decoded += size
        if self.decoded > self.limits.decoded_mb * MB:
            what = f"content that decodes to more than {_shown(self.limits.decoded_mb)} MB"
            raise OverBudget(_over(what, DECODED_VARIABLE))

    def spend_parts(self, count: int, kind: str) -> None:
        """Count parts (`kind`: "pages", "chapters", ...) before they are read."""
        self.parts += count
        if self.parts > self.limits.parts:
            what = f"more than {_shown(self.limits.parts)} {kind}"
            raise OverBudget(_over(what, PARTS_VARIABLE))

    def check_time(self) -> None:
        """Stop a reading that has run past its time."""
        if time.monotonic() > self.deadline:
            what = f"still unread after {_shown(self.limits.seconds)} s"
            raise OverBudget(_over(what, SECONDS_VARIABLE))


def _shown(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _over(what: str, variable: str) -> str:
    return f"over the per-file budget: {what} (set {variable} to raise it); nothing read from it"
