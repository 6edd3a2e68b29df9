"""The `openai` client for api.openai.com or any OpenAI-compatible server."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from raft.errors import RaftError

if TYPE_CHECKING:
    import openai

# Local servers (llama.cpp, vLLM, Ollama) accept any key; the client insists on one.
NO_KEY = "sk-no-key-required"


def key_file() -> Path:
    """Keys live outside the data folder: `RAFT_KEY_FILE`, else ~/.config/raft/keys.toml."""
    return Path(os.environ.get("RAFT_KEY_FILE") or Path.home() / ".config" / "raft" / "keys.toml")


def api_key(url: str | None) -> str:
    """Lookup order: `OPENAI_API_KEY`, then `openai = "..."` in the key file."""
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    path = key_file()
    if path.is_file():
        try:
            key = tomllib.loads(path.read_text(encoding="utf-8")).get("openai")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RaftError(f"cannot read key file {path}: {exc}") from None
        if key:
            return str(key)
    if url:
        return NO_KEY
    raise RaftError(
        'no OpenAI API key: set OPENAI_API_KEY, or write `openai = "sk-..."` to '
        f"{path} (or point the backend at a local server with openai:MODEL@http://host:port/v1)"
    )


def make_client(url: str | None) -> openai.OpenAI:
    """A client whose own retries cover 429 (honouring Retry-After), 5xx and timeouts."""
    import openai

    return openai.OpenAI(
        api_key=api_key(url),
        base_url=url,
        timeout=float(os.environ.get("RAFT_TIMEOUT", "120")),
        max_retries=int(os.environ.get("RAFT_RETRIES", "4")),
    )
