"""Backend spec strings, parsed once."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from raft.errors import UsageError

SPEC_HELP = "`local`, `gguf:/path/model.gguf`, `openai:MODEL` or `openai:MODEL@http://host:port/v1`"
_OPENAI = re.compile(r"^openai:(?P<model>[^@\s]+)(?:@(?P<url>https?://\S+))?$")


@dataclass(frozen=True)
class BackendSpec:
    kind: str  # "local" | "gguf" | "openai"
    model: str = ""  # a GGUF path or a remote model name
    url: str | None = None  # an OpenAI-compatible base URL; None means api.openai.com

    def __str__(self) -> str:
        if self.kind == "local":
            return "local"
        if self.kind == "gguf":
            return f"gguf:{self.model}"
        return f"openai:{self.model}" + (f"@{self.url}" if self.url else "")


def parse_spec(text: str) -> BackendSpec:
    """Parse a backend spec, refusing anything else with the list of valid forms."""
    text = (text or "").strip()
    if text == "local":
        return BackendSpec("local")
    if text.startswith("gguf:") and len(text) > 5:
        path = Path(text[5:]).expanduser()
        if not path.is_file():
            raise UsageError(f"backend {text!r}: no such GGUF file {path}")
        return BackendSpec("gguf", str(path.resolve()))
    match = _OPENAI.match(text)
    if match:
        return BackendSpec("openai", match["model"], match["url"])
    raise UsageError(f"unknown backend spec {text!r}: use {SPEC_HELP}")
