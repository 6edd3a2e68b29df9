"""Dates normalised to ISO 8601 days; an unknown date stays empty, never "today"."""

from __future__ import annotations

import re
import time
from datetime import date, datetime


def normalize_date(value: object) -> str:
    """`YYYY-MM-DD` for a date, datetime, struct_time or parseable string; "" otherwise."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, time.struct_time):
        return date(value.tm_year, value.tm_mon, value.tm_mday).isoformat()
    from dateutil import parser

    try:
        # A default far in the past keeps a partial date from borrowing today's fields.
        return parser.parse(str(value), default=datetime(1, 1, 1)).date().isoformat()
    except (ValueError, OverflowError):
        return ""


def is_iso_date(value: object) -> bool:
    """A `YYYY-MM-DD` string of a real day (fromisoformat alone also takes 20210101)."""
    if not (isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value)):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
