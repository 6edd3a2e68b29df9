"""One persona, opened once: its settings read, each backend resolved, the cache open.

A stage receives the workspace (or the parts it needs) instead of a bare `Persona` it would
re-read persona.toml for. The models and the store are made when first asked for, so a
command that never generates loads no generator."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property

from raft.backends.cache import Cache
from raft.backends.embed import CachedEmbedder, make_embedder
from raft.backends.llm import CachedLLM, make_llm
from raft.backends.spec import ROLES, BackendSpec, choose_spec, parse_spec
from raft.config import PersonaConfig, load_config
from raft.paths import Persona
from raft.store import Store
from raft.target import Target, most_named, report_names, target_of, transcript_names
from raft.training.registry import newest_retriever


@dataclass
class Workspace:
    persona: Persona
    config: PersonaConfig
    overrides: dict[str, str | None] = field(default_factory=dict)  # role -> the flag's spec
    _specs: dict[str, BackendSpec] = field(default_factory=dict, repr=False)
    _llms: dict[str, CachedLLM] = field(default_factory=dict, repr=False)

    @classmethod
    def open(
        cls,
        persona: Persona,
        *,
        generator: str | None = None,
        judge: str | None = None,
        embedder: str | None = None,
        record_target: bool = False,
    ) -> Workspace:
        """`record_target`: a persona.toml without `name` gets the name the training
        transcripts give the author written in, as a stage that makes data does."""
        overrides = {"generator": generator, "judge": judge, "embedder": embedder}
        names = transcript_names(persona) if record_target else Counter()
        ws = cls(persona, load_config(persona, name_if_missing=most_named(names)), overrides)
        if record_target:
            report_names(persona, ws.config, names)
        return ws

    def spec(self, role: str) -> BackendSpec:
        """The role's backend: flag, then environment, then persona.toml, then `local`."""
        if role not in self._specs:
            if role not in ROLES:
                raise ValueError(f"no backend role {role!r}")
            chosen = choose_spec(role, self.overrides.get(role), self.config.backends)
            self._specs[role] = self._resolve_local(chosen) if role == "embedder" else chosen
        return self._specs[role]

    def _resolve_local(self, spec: BackendSpec) -> BackendSpec:
        """Bare `local` embeds with the persona's newest trained retriever when there is one
        (`raft embed:train`); `local:all-MiniLM-L6-v2` always means the plain model."""
        if spec.kind != "local" or spec.model:
            return spec
        record = newest_retriever(self.persona)
        return BackendSpec("local", f"retriever:{record.id}") if record else spec

    def embedder_for(self, spec: str) -> CachedEmbedder:
        """The embedder a recorded spec names (a conversation spec's), `local` resolved as
        for this persona now, so training data, chat and the benchmark embed alike."""
        return make_embedder(
            self._resolve_local(parse_spec(spec)), self.cache, models_dir=self.persona.models
        )

    @cached_property
    def cache(self) -> Cache:
        return Cache(self.persona.cache)

    def llm(self, role: str = "generator") -> CachedLLM:
        if role not in self._llms:
            self._llms[role] = make_llm(self.spec(role), self.cache)
        return self._llms[role]

    @cached_property
    def embedder(self) -> CachedEmbedder:
        return make_embedder(self.spec("embedder"), self.cache, models_dir=self.persona.models)

    @cached_property
    def store(self) -> Store:
        return Store(self.persona, self.embedder)

    def target(self, warn: bool = True) -> Target:
        return target_of(self.persona, self.config, warn)

    @property
    def display_name(self) -> str:
        """The target's name for people: reports, tables, titles."""
        return self.target(warn=False).name

    def record_target(self) -> Target:
        """The target, its name written into persona.toml when read from the transcripts:
        for a command that has added a transcript since the workspace was opened."""
        names = transcript_names(self.persona)
        self.config = load_config(self.persona, name_if_missing=most_named(names))
        report_names(self.persona, self.config, names)
        return self.target()
