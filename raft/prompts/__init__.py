"""Prompt templates, loaded as package data and versioned by hash, and the JSON replies
they ask for, read back.

Templates use `$name` placeholders (string.Template), so braces in quoted text are safe.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from string import Template
from typing import Any


@cache
def template(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8").strip()


def render(name: str, **values: str) -> str:
    """The template filled in; a missing placeholder is an error, not a blank."""
    return Template(template(name)).substitute(values)


def quote(kind: str, text: str) -> str:
    """Untrusted text (scraped passages, questions, answers, replies) between tags it cannot
    close: the tag carries a hash of the text itself, and no text can contain the closing
    tag of its own hash. Deterministic, so the same call keeps the same cache key."""
    digest = hashlib.sha256(f"{kind}\0{text}".encode()).hexdigest()[:12]
    tag = f"{kind}-{digest}"
    return f"<{tag}>\n{text}\n</{tag}>"


def prompt_hash(name: str) -> str:
    return hashlib.sha256(template(name).encode("utf-8")).hexdigest()[:12]


def prompt_hashes(*names: str) -> dict[str, str]:
    """What every written file records, so two datasets can be told apart."""
    return {name: prompt_hash(name) for name in names}


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def parse_json(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse a model's JSON reply, tolerating code fences and prose around the object."""
    import jsonschema

    cleaned = _FENCE.sub("", text.strip())
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the reply")
    # strict=False: a raw newline or tab inside a string is still the answer meant
    data = json.loads(cleaned[start : end + 1], strict=False)
    jsonschema.validate(data, schema)
    return data
