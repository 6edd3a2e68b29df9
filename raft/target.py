"""Who the replica is: one rule everywhere, from persona.toml and the training transcripts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from raft import console
from raft.config import PersonaConfig, load_config, named
from raft.paths import Persona
from raft.transcripts import load_interviews


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
    return Counter(i.target for i in load_interviews(persona.transcripts))


def most_named(names: Counter[str]) -> str | None:
    return names.most_common(1)[0][0] if names else None


def target_of(persona: Persona, config: PersonaConfig, warn: bool = True) -> Target:
    """`name` in persona.toml, else the name the training transcripts give the author (the
    most common one), else the folder name, with a warning."""
    if named(config):
        return Target(config.name.strip(), "persona.toml")
    if name := most_named(transcript_names(persona)):
        return Target(name, "transcripts")
    if warn:
        console.warn(
            f"{persona.config} has no `name` and no training transcript names the author: "
            f"showing {persona.name!r}, and prompts call the author 'the author'"
        )
    return Target(persona.name, "folder")


def target(persona: Persona, warn: bool = True) -> Target:
    """The target by the rule, persona.toml read now."""
    return target_of(persona, load_config(persona), warn)


def display_name(persona: Persona) -> str:
    """The target's name for people: reports, tables, titles."""
    return target(persona, warn=False).name


def report_names(persona: Persona, config: PersonaConfig, names: Counter[str]) -> None:
    """Say that the author's name was recorded in persona.toml, and which transcripts name
    the author otherwise."""
    found = target_of(persona, config, warn=False)
    if config.recorded_name:
        console.warn(f"recorded the author's name {found.name!r} in {persona.config}")
    for name, count in sorted((n, c) for n, c in names.items() if n != found.name):
        console.warn(
            f"{count} training transcript(s) name the author {name!r}; prompts use "
            f"{found.name!r} (set `name` in {persona.config} to choose)"
        )
