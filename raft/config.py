"""`persona.toml` and the choice of backend for each role."""

from __future__ import annotations

import os
import tomllib
from collections import Counter
from dataclasses import dataclass
from typing import Any

from raft import console
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
        config = tomllib.loads(persona.config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RaftError(f"{persona.config}: not valid TOML ({exc})") from None
    problem = _config_problem(config)
    if problem:
        raise RaftError(f"{persona.config}: {problem}")
    return config


def _config_problem(config: dict[str, Any]) -> str | None:
    """What is wrong with the shape of persona.toml's known keys, if anything."""
    if "name" in config and not isinstance(config["name"], str):
        return "`name` must be a string"
    sources = config.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        return "`sources` must be a list of strings"
    backends = config.get("backends", {})
    if not isinstance(backends, dict) or not all(isinstance(v, str) for v in backends.values()):
        return '`[backends]` must be a table of backend spec strings (e.g. generator = "local")'
    return None


def save_config(persona: Persona, config: dict[str, Any]) -> None:
    import tomli_w

    write_text(persona.config, tomli_w.dumps(config))


def update_config(persona: Persona, **values: Any) -> None:
    """Set these keys in persona.toml; the file is written only when one of them changes."""
    config = load_config(persona)
    if any(config.get(key) != value for key, value in values.items()):
        save_config(persona, config | values)


@dataclass(frozen=True)
class Target:
    """Who the replica is, and where that was read."""

    name: str
    source: str  # "persona.toml", "transcripts" or "folder"

    @property
    def prompt_name(self) -> str:
        """The name prompts give the author: a folder slug is no person's name."""
        return self.name if self.source != "folder" else "the author"


def transcript_names(persona: Persona) -> Counter[str]:
    """How many training transcripts give each name as `participants.a`."""
    from raft.transcripts import load_interviews

    return Counter(i.target for i in load_interviews(persona.transcripts))


def target(persona: Persona, warn: bool = True) -> Target:
    """One rule everywhere: `name` in persona.toml, else the name the training transcripts
    give the author (the most common one), else the folder name, with a warning."""
    name = load_config(persona).get("name")
    if isinstance(name, str) and name.strip():
        return Target(name.strip(), "persona.toml")
    names = transcript_names(persona)
    if names:
        return Target(names.most_common(1)[0][0], "transcripts")
    if warn:
        console.warn(
            f"{persona.config} has no `name` and no training transcript names the author: "
            f"showing {persona.name!r}, and prompts call the author 'the author'"
        )
    return Target(persona.name, "folder")


def display_name(persona: Persona) -> str:
    """The target's name for people: reports, tables, titles."""
    return target(persona, warn=False).name


def record_target(persona: Persona) -> Target:
    """Write the target's name into persona.toml when it has none (the rest of the file is
    kept as written), and report transcripts that name the author otherwise."""
    found = target(persona, warn=False)
    if found.source == "transcripts":
        text = persona.config.read_text(encoding="utf-8") if persona.config.is_file() else ""
        import tomli_w

        # Top-level keys must precede any table, so the name goes first.
        write_text(persona.config, tomli_w.dumps({"name": found.name}) + text)
        console.warn(f"recorded the author's name {found.name!r} in {persona.config}")
    others = {n: c for n, c in transcript_names(persona).items() if n != found.name}
    for name, count in sorted(others.items()):
        console.warn(
            f"{count} training transcript(s) name the author {name!r}; prompts use "
            f"{found.name!r} (set `name` in {persona.config} to choose)"
        )
    return found


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
