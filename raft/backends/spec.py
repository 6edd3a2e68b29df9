"""Backend spec strings, parsed once.

A server URL may carry credentials (`https://user:password@host/v1`, `?api_key=...`). They
reach the HTTP client only: `str(spec)`, model ids, records, cache keys and messages show
the URL without them. A spec read back from a record finds them again in a spec given to
this process (a flag, persona.toml) or in RAFT_GENERATOR, RAFT_JUDGE or RAFT_EMBEDDER.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from raft.errors import UsageError

SPEC_HELP = "`local`, `gguf:/path/model.gguf`, `openai:MODEL` or `openai:MODEL@http://host:port/v1`"
# An embedder may name its local model: the plain MiniLM, or a retriever trained by
# `raft embed:train` (its registry id); bare `local` is the persona's newest retriever, if any.
_LOCAL_EMBEDDER = re.compile(r"^local:(?P<model>all-MiniLM-L6-v2|retriever:[\w.-]+)$")
_OPENAI = re.compile(r"^openai:(?P<model>[^@\s]+)(?:@(?P<url>https?://\S+))?$")
# Query parameters that carry a secret: api_key, key, access_token, sig, password, ...
_SECRET_PARAM = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s'\"`<>]+")
_KEY = re.compile(r"\b(sk-[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+")

# Each role is chosen separately: flag, then environment, then persona.toml, then `local`.
ROLES = {
    "generator": "RAFT_GENERATOR",  # rephrase, judge and replies
    "judge": "RAFT_JUDGE",  # the RATF judge
    "embedder": "RAFT_EMBEDDER",
}

# Redacted URL -> the URL as given, for URLs given with credentials to this process.
_CREDENTIALS: dict[str, str] = {}


def redact_url(url: str) -> str:
    """The URL without user:password@ and without query parameters that hold a secret."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:  # not a URL we can take apart: show none of it
        return "<url>"
    kept = parts.query
    if any(_SECRET_PARAM.search(name) for name, _ in query):
        kept = urlencode([(k, v) for k, v in query if not _SECRET_PARAM.search(k)])
    return urlunsplit((parts.scheme, host, parts.path, kept, parts.fragment))


def redact(text: str) -> str:
    """Free text (a command line, a message) with every URL in it redacted, and API keys
    shortened to their first characters."""
    return _KEY.sub(r"\1...", _URL.sub(lambda match: redact_url(match[0]), text))


@dataclass(frozen=True, repr=False)
class BackendSpec:
    kind: str  # "local" | "gguf" | "openai"
    model: str = ""  # a GGUF path or a remote model name
    url: str | None = None  # an OpenAI-compatible base URL as given; None: api.openai.com

    @property
    def redacted(self) -> str:
        """The spec as recorded and shown: the URL without credentials."""
        if self.kind == "local":
            return f"local:{self.model}" if self.model else "local"
        if self.kind == "gguf":
            return f"gguf:{self.model}"
        return f"openai:{self.model}" + (f"@{redact_url(self.url)}" if self.url else "")

    def __str__(self) -> str:
        return self.redacted

    def __repr__(self) -> str:
        return f"BackendSpec({self.redacted!r})"


def with_credentials(url: str) -> str:
    """A URL as recorded (no credentials), with the credentials given for it in this
    process or in a role's environment variable; unchanged where none were given."""
    if redact_url(url) != url:  # given with credentials: keep them for the records read later
        _CREDENTIALS[redact_url(url)] = url
        return url
    if url in _CREDENTIALS:
        return _CREDENTIALS[url]
    for variable in ROLES.values():
        match = _OPENAI.match((os.environ.get(variable) or "").strip())
        if match and match["url"] and redact_url(match["url"]) == url:
            return match["url"]
    return url


def parse_spec(text: str) -> BackendSpec:
    """Parse a backend spec, refusing anything else with the list of valid forms."""
    text = (text or "").strip()
    if text == "local":
        return BackendSpec("local")
    local = _LOCAL_EMBEDDER.match(text)
    if local:
        return BackendSpec("local", local["model"])
    if text.startswith("gguf:") and len(text) > 5:
        path = Path(text[5:]).expanduser()
        if not path.is_file():
            raise UsageError(f"backend {redact(text)!r}: no such GGUF file {path}")
        return BackendSpec("gguf", str(path.resolve()))
    match = _OPENAI.match(text)
    if match:
        url = with_credentials(match["url"]) if match["url"] else None
        return BackendSpec("openai", match["model"], url)
    raise UsageError(f"unknown backend spec {redact(text)!r}: use {SPEC_HELP}")


def choose_spec(role: str, override: str | None, configured: dict[str, str]) -> BackendSpec:
    """The backend for a role: the flag, else its environment variable, else persona.toml's
    `[backends]`, else `local`."""
    spec = parse_spec(override or os.environ.get(ROLES[role]) or configured.get(role) or "local")
    if spec.kind == "local" and spec.model and role != "embedder":
        raise UsageError(f"{role} backend {spec}: only an embedder names a local model; use local")
    return spec
