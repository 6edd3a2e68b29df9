"""`persona.toml` and the choice of backend for each role."""

from __future__ import annotations

import os
import tomllib
from typing import Any

from raft.backends.cache import Cache
from raft.backends.embed import CachedEmbedder, make_embedder
from raft.backends.llm import CachedLLM, make_llm
from raft.backends.spec import BackendSpec, parse_spec
from raft.errors import RaftError
from raft.files import write_text
from raft.paths import Persona

# Each role is chosen separately: flag, then environment, then persona.toml, then `local`.
ROLES = {
    "generator": "RAFT_GENERATOR",  # rephrase, judge and replies
    "judge": "RAFT_JUDGE",  # the RATF judge
    "embedder": "RAFT_EMBEDDER",
}


def load_config(persona: Persona) -> dict[str, Any]:
    """The persona's settings; an absent file is an empty config."""
    if not persona.config.is_file():
        return {}
    try:
        return tomllib.loads(persona.config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RaftError(f"{persona.config}: not valid TOML ({exc})") from None


def save_config(persona: Persona, config: dict[str, Any]) -> None:
    import tomli_w

    write_text(persona.config, tomli_w.dumps(config))


def display_name(persona: Persona) -> str:
    """The target's name as interviews and prompts use it."""
    return str(load_config(persona).get("name") or persona.name)


def backend_spec(persona: Persona, role: str, override: str | None = None) -> BackendSpec:
    chosen = (
        override
        or os.environ.get(ROLES[role])
        or load_config(persona).get("backends", {}).get(role)
        or "local"
    )
    return parse_spec(chosen)


def open_cache(persona: Persona) -> Cache:
    return Cache(persona.cache)


def persona_llm(
    persona: Persona, role: str = "generator", override: str | None = None
) -> CachedLLM:
    return make_llm(backend_spec(persona, role, override), open_cache(persona))


def persona_embedder(persona: Persona, override: str | None = None) -> CachedEmbedder:
    return make_embedder(backend_spec(persona, "embedder", override), open_cache(persona))
