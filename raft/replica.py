"""The replica at inference: the one path that `chat`, `serve` and the benchmark share.

Per question: recall memories exactly as ft:gen's question-only pass does (same prompts,
same generator), put the useful ones in the memory slot the training samples used, pack
the conversation with the same budget rule as the training samples, and ask the model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date

from raft.backends.llm import CachedLLM, LlamaCppLLM, OpenAILLM, make_llm
from raft.backends.models import smollm2_gguf
from raft.config import display_name, open_cache, persona_embedder, persona_llm
from raft.dataset import Message, pack_sample
from raft.errors import UsageError
from raft.memories import Memory, Recall, RecallSettings, system_prompt, user_turn
from raft.paths import Persona
from raft.store import Store
from raft.training.registry import SUCCEEDED, ModelRecord, load_records

DEFAULT_CONTEXT = 4096  # ft:gen's default --max-tokens
OPENAI_API = "https://api.openai.com"


@dataclass
class Turn:
    question: str
    reply: str
    memories: list[Memory] = field(default_factory=list)


@dataclass(frozen=True)
class ReplicaSettings:
    memories: bool = True
    before: str | None = None  # talk to the author as of this date: only earlier writing
    interviewer: str = "the interviewer"
    date: str = ""  # of the conversation; default: `before`, else today
    max_context: int = 0  # token budget of a prompt; default: the one ft:gen packed with
    reply_tokens: int = 512
    temperature: float = 0.7
    seed: int = 0


class Replica:
    """A model that answers as the author, with the author's memories in context."""

    def __init__(
        self,
        target: str,
        model: CachedLLM,
        recall: Recall | None,
        settings: ReplicaSettings,
        label: str = "",
    ):
        self.target = target
        self.model = model
        self.recall = recall
        self.settings = settings
        self.label = label or model.model_id

    def remember(self, question: str) -> list[Memory]:
        """The memories judged useful from the question alone, as in ft:gen's pass 1."""
        if self.recall is None:
            return []
        recalled = self.recall.recall(question, before=self.settings.before)
        return [m for m in recalled if m.useful]

    def messages(self, history: list[Turn], question: str, memories: list[Memory]) -> list[Message]:
        """The prompt: a training sample's messages up to, not including, the answer."""
        s = self.settings
        system = system_prompt(self.target, s.interviewer, s.date)
        turns = [(user_turn(t.question, t.memories), t.reply) for t in history]
        turns.append((user_turn(question, memories), ""))
        return pack_sample(system, turns, len(history), s.max_context).messages[:-1]

    def stream(self, messages: list[Message]) -> Iterator[str]:
        s = self.settings
        return self.model.stream(
            messages, temperature=s.temperature, max_tokens=s.reply_tokens, seed=s.seed
        )


def training_made(persona: Persona) -> dict:
    """How ft:gen made the training data (`stats.json`), so inference can match it."""
    stats = persona.finetune / "stats.json"
    if not stats.is_file():
        return {}
    return json.loads(stats.read_text(encoding="utf-8")).get("made", {})


def record_model(persona: Persona, record: ModelRecord) -> CachedLLM:
    """The chat model a registry record names."""
    cache = open_cache(persona)
    if record.status != SUCCEEDED:
        raise UsageError(f"model {record.id} is {record.status}, not usable")
    if record.venue == "openai":
        base = record.params.get("api_base", "")
        url = None if not base or base.startswith(OPENAI_API) else base
        return CachedLLM(OpenAILLM(record.model, url), cache)
    if record.base_model != "local":
        raise UsageError(
            f"{record.id} was trained on {record.base_model}; chat runs local adapters of the "
            f"default SmolLM2 only. Export it (`raft export {persona.name} --run {record.id} "
            "--gguf`), serve base + adapter with a LoRA-capable server (llama.cpp `--lora`, "
            "vLLM) and pass --model openai:NAME@URL"
        )
    adapter = persona.root / record.exports.get("gguf", "")
    if not record.exports.get("gguf") or not adapter.is_file():
        from raft.training.export import export_gguf

        record = export_gguf(persona, record.id)
        adapter = persona.root / record.exports["gguf"]
    return CachedLLM(LlamaCppLLM(smollm2_gguf(), lora_path=adapter), cache)


def choose_model(persona: Persona, choice: str | None) -> tuple[CachedLLM, str]:
    """A registry id or backend spec; by default the newest trained model, else the base."""
    records = load_records(persona)
    if choice:
        for record in records:
            if record.id == choice:
                return record_model(persona, record), record.id
        if ":" not in choice and choice != "local":
            known = ", ".join(r.id for r in records) or "none yet"
            raise UsageError(f"no model {choice!r} in the registry (known: {known})")
        return make_llm(choice, open_cache(persona)), choice
    done = [r for r in records if r.status == SUCCEEDED]
    if done:
        return record_model(persona, done[-1]), done[-1].id
    return persona_llm(persona, "generator"), "base model (no trained model yet)"


def open_recall(persona: Persona, generator: str | None = None, hint: str = "") -> Recall:
    """Recall as ft:gen made the training data: its store, generator and `-k`."""
    store = Store(persona, persona_embedder(persona))
    if not store.count():
        raise UsageError(
            f"the store of {persona.name!r} is empty: run `raft embed {persona.name}` first{hint}"
        )
    k = training_made(persona).get("recall", {}).get("k", RecallSettings().k)
    llm = persona_llm(persona, "generator", generator)
    return Recall(store, llm, display_name(persona), RecallSettings(k=k))


def complete_settings(persona: Persona, settings: ReplicaSettings) -> ReplicaSettings:
    """Fill in the conversation date and the training samples' token budget."""
    budget = training_made(persona).get("ft_gen", {}).get("max_tokens", DEFAULT_CONTEXT)
    return replace(
        settings,
        date=settings.date or settings.before or date.today().isoformat(),
        max_context=settings.max_context or budget,
    )


def open_replica(
    persona: Persona, model: str | None, settings: ReplicaSettings, generator: str | None = None
) -> Replica:
    """The persona's replica: the chosen model, and recall unless memories are off."""
    settings = complete_settings(persona, settings)
    llm, label = choose_model(persona, model)
    hint = " (or talk without memories: --no-memories)"
    recall = open_recall(persona, generator, hint) if settings.memories else None
    return Replica(display_name(persona), llm, recall, settings, label)
