"""`persona.toml`: read and validated into a typed record, and written back.

A leaf: what the settings mean (which backend, who the target is) is decided by the modules
that use them (raft.backends.spec, raft.target, raft.workspace)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

from raft.errors import RaftError, UsageError
from raft.files import write_text
from raft.paths import Persona


@dataclass(frozen=True)
class PersonaConfig:
    """The keys raft reads, typed; `data` is the whole table as written, unknown keys too."""

    name: str | None = None
    sources: tuple[str, ...] = ()
    backends: dict[str, str] = field(default_factory=dict)  # role -> backend spec string
    blocked_words: tuple[str, ...] = ()
    scrub: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    recorded_name: bool = False  # `name` was missing, and load_config wrote it in


def named(config: PersonaConfig) -> bool:
    return bool(config.name and config.name.strip())


def load_config(persona: Persona, name_if_missing: str | None = None) -> PersonaConfig:
    """The persona's settings; an absent file is an empty config. With `name_if_missing`, a
    file without `name` gets that name written in, the rest kept as written: how a stage
    records the author it found in the transcripts."""
    config = _read(persona)
    if not name_if_missing or named(config):
        return config
    data = {"name": name_if_missing} | {k: v for k, v in config.data.items() if k != "name"}
    if "name" in config.data:  # a blank name: one more `name =` line would be invalid TOML
        save_config(persona, data)
    else:
        _prepend_name(persona, name_if_missing)
    return replace(config, name=name_if_missing, data=data, recorded_name=True)


def _read(persona: Persona) -> PersonaConfig:
    if not persona.config.is_file():
        return PersonaConfig()
    try:
        data = tomllib.loads(persona.config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RaftError(f"{persona.config}: not valid TOML ({exc})") from None
    problem = _config_problem(data)
    if problem:
        raise RaftError(f"{persona.config}: {problem}")
    words = data.get("blocked_words", [])
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise UsageError(
            f"{persona.config}: `blocked_words` must be a list of strings, "
            'e.g. blocked_words = ["Jo Park", "Elm Street"]'
        )
    return PersonaConfig(
        name=data.get("name"),
        sources=tuple(data.get("sources", [])),
        backends=dict(data.get("backends", {})),
        blocked_words=tuple(words),
        scrub=data.get("scrub") is True,
        data=data,
    )


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


def save_config(persona: Persona, data: dict[str, Any]) -> None:
    import tomli_w

    write_text(persona.config, tomli_w.dumps(data))


def update_config(persona: Persona, **values: Any) -> None:
    """Set these keys in persona.toml; the file is written only when one of them changes."""
    data = load_config(persona).data
    if any(data.get(key) != value for key, value in values.items()):
        save_config(persona, data | values)


def _prepend_name(persona: Persona, name: str) -> None:
    import tomli_w

    text = persona.config.read_text(encoding="utf-8") if persona.config.is_file() else ""
    # Top-level keys must precede any table, so the name goes first.
    write_text(persona.config, tomli_w.dumps({"name": name}) + text)
