"""The replica at inference: the one path that `chat`, `serve` and the benchmark share.

A replica is built from the conversation spec its model was trained with (the registry
record's copy, else the current training data's, else the persona's defaults): the same
target, recall (generator, embedder, `k`, context) and token budgets. Per question it
recalls memories as ft:gen's question-only pass does and renders the prompt with
`raft.conversation.render`, the function that rendered the training samples.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date

from raft.backends.llm import CachedLLM, LlamaCppLLM, OpenAILLM, make_llm
from raft.backends.models import smollm2_gguf
from raft.backends.spec import parse_spec, redact
from raft.console import warn
from raft.conversation import (
    NO_MEMORIES,
    PROMPTS,
    Budget,
    ConversationSpec,
    Exchange,
    Message,
    render,
    system_prompt,
    training_spec,
)
from raft.errors import UsageError
from raft.memories import Recall
from raft.memory import Memory
from raft.paths import Persona
from raft.prompts import prompt_hashes
from raft.store import Store, require_store
from raft.training.registry import SUCCEEDED, ModelRecord, load_records
from raft.workspace import Workspace

OPENAI_API = "https://api.openai.com"


@dataclass(frozen=True)
class ReplicaSettings:
    memories: bool = True
    before: str | None = None  # talk to the author as of this date: only earlier writing
    interviewer: str = "the interviewer"
    date: str = ""  # of the conversation; default: `before`, else today
    reply_tokens: int = 512
    temperature: float = 0.7
    seed: int = 0


class Replica:
    """A model that answers as the author, with the author's memories in context."""

    def __init__(
        self,
        spec: ConversationSpec,
        model: CachedLLM | None,
        recall: Recall | None,
        settings: ReplicaSettings,
        budgets: list[Budget],
        label: str = "",
    ):
        self.spec = spec
        self.target = spec.target
        self.model = model
        self.recall = recall
        self.settings = settings
        self.budgets = budgets
        self.label = label or (model.model_id if model else "")

    def with_settings(self, **changes) -> Replica:
        settings = replace(self.settings, **changes)
        recall = self.recall if settings.memories else None
        return Replica(self.spec, self.model, recall, settings, self.budgets, self.label)

    def recalled(self, question: str, history: list[Exchange]) -> list[Memory]:
        """Every memory recalled for the question, judged from the question alone as in
        ft:gen's pass 1; with the spec's `context`, the previous answer joins the query."""
        if self.recall is None:
            return []
        previous = history[-1].answer if history else ""
        return self.recall.recall(question, self.settings.before, previous)

    def remember(self, question: str, history: list[Exchange]) -> list[Memory]:
        """The memories for the question's slot: those judged useful."""
        return [m for m in self.recalled(question, history) if m.useful]

    def recall_history(self, pairs: list[tuple[str, str]]) -> list[Exchange]:
        """Earlier (question, answer) pairs with the memories their slots show: each recalled
        as it was live, which is the training samples' history rule."""
        history: list[Exchange] = []
        for question, answer in pairs:
            history.append(Exchange(question, answer, self.remember(question, history)))
        return history

    def messages(
        self, history: list[Exchange], question: str, memories: list[Memory]
    ) -> list[Message]:
        """The prompt: what a training sample renders, without the answer."""
        s = self.settings
        system = system_prompt(self.target, s.interviewer, s.date)
        block = self.spec.history_block
        return render(system, history, question, memories, self.budgets, block=block).messages

    def stream(self, messages: list[Message]) -> Iterator[str]:
        s = self.settings
        return self.model.stream(
            messages, temperature=s.temperature, max_tokens=s.reply_tokens, seed=s.seed
        )


def persona_spec(ws: Workspace) -> ConversationSpec:
    """The spec of the current training data, else the persona's defaults."""
    spec = training_spec(ws.persona)
    if spec is not None:
        return spec
    return ConversationSpec(
        target=ws.target().prompt_name,
        generator=str(ws.spec("generator")),
        embedder=str(ws.spec("embedder")),
    )


def model_spec(ws: Workspace, record: ModelRecord | None) -> ConversationSpec:
    """The spec a model was trained with; a base model follows the current training data."""
    if record is not None and record.spec:
        return ConversationSpec.from_row(record.spec)
    return persona_spec(ws)


def model_budgets(persona: Persona, spec: ConversationSpec, record: ModelRecord | None):
    """The spec's budget, and the one the model was trained with where it had its own."""
    budgets = [spec.budget]
    if record is not None and record.budget:
        b = record.budget
        budgets.append(Budget(b["limit"], b["reserve"], str(persona.root / b["tokenizer"])))
    return budgets


def record_model(ws: Workspace, record: ModelRecord) -> CachedLLM:
    """The chat model a registry record names."""
    persona, cache = ws.persona, ws.cache
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


def choose_model(ws: Workspace, choice: str | None) -> tuple[CachedLLM, str, ModelRecord | None]:
    """A registry id or backend spec; by default the newest trained model, else the base.
    Returns the model, its label, and its registry record when it has one."""
    records = [r for r in load_records(ws.persona) if r.is_chat_model]  # not retrievers
    if choice:
        for record in records:
            if record.id == choice:
                return record_model(ws, record), record.id, record
        if ":" not in choice and choice != "local":
            known = ", ".join(r.id for r in records) or "none yet"
            raise UsageError(f"no model {choice!r} in the registry (known: {known})")
        return make_llm(choice, ws.cache), choice, None
    done = [r for r in records if r.status == SUCCEEDED]
    if done:
        return record_model(ws, done[-1]), done[-1].id, done[-1]
    return ws.llm(), "base model (no trained model yet)", None


def open_recall(
    ws: Workspace, spec: ConversationSpec, generator: str | None = None, hint: str = ""
) -> Recall:
    """Recall as the spec says: its store, embedder, generator, `k` and context. A
    `generator` that differs from the spec's gets one warning line naming both."""
    persona, cache = ws.persona, ws.cache
    store = Store(persona, ws.embedder_for(spec.embedder))
    require_store(persona, store, hint)
    if spec.embedder_id and store.embedder.model_id != spec.embedder_id:
        warn(
            f"the embedder {spec.embedder} is now {store.embedder.model_id} (a retriever "
            f"trained since?); the training data was made with {spec.embedder_id}"
        )
    chosen = str(parse_spec(generator)) if generator else spec.generator
    llm = make_llm(chosen, cache)
    if chosen != spec.generator:
        warn(
            f"--generator {chosen} differs from the generator the training data was made "
            f"with ({spec.generator}): memories are not judged as in training"
        )
    elif spec.generator_id and llm.model_id != spec.generator_id:
        warn(
            f"the generator {spec.generator} is now {llm.model_id}; the training data was "
            f"made with {spec.generator_id}"
        )
    changed = sorted(n for n, h in prompt_hashes(*PROMPTS).items() if spec.prompts.get(n) != h)
    if changed:
        warn(f"prompt templates changed since the training data was made: {', '.join(changed)}")
    return Recall(store, llm, spec)


def conversation_date(settings: ReplicaSettings) -> ReplicaSettings:
    """The conversation is dated `--before` when given, else today."""
    return replace(settings, date=settings.date or settings.before or date.today().isoformat())


def open_replica(
    persona: Persona, model: str | None, settings: ReplicaSettings, generator: str | None = None
) -> Replica:
    """The persona's replica: the chosen model, built from the spec it was trained with."""
    ws = Workspace.open(persona)
    llm, label, record = choose_model(ws, model)
    spec = model_spec(ws, record)
    if settings.memories and spec.memory_style == NO_MEMORIES:
        warn(f"{label} was trained without memories (the plain dataset): it answers without")
        settings = replace(settings, memories=False)
    hint = " (or talk without memories: --no-memories)"
    recall = open_recall(ws, spec, generator, hint) if settings.memories else None
    budgets = model_budgets(persona, spec, record)
    return Replica(spec, llm, recall, conversation_date(settings), budgets, label)


BASE = "base"


@dataclass(frozen=True)
class ServedModel:
    """One model `raft serve` answers as: its request name, what is behind it, and whether
    it answers with recalled memories unless a request says not to."""

    id: str
    label: str  # the registry id or backend spec behind the name
    memories: bool


class Replicas:
    """The models `raft serve` answers as, each opened on first use and kept: the default
    (named for the persona: the model `--model` chose), `base` (the persona's generator
    model, untrained), and every trained model of the registry by its id."""

    def __init__(
        self,
        default: Replica,
        name: str,
        persona: Persona | None = None,
        settings: ReplicaSettings | None = None,
        generator: str | None = None,
    ):
        self.name = name
        self.target = default.target
        self.persona = persona
        self.settings = settings or default.settings  # the server's, for the other models
        self.generator = generator
        self._open: dict[str, Replica] = {name: default}
        self._opening: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def models(self) -> list[ServedModel]:
        """What a model picker offers; the registry is read afresh, so a model trained
        while the server runs is offered too."""
        memories = self.settings.memories
        default = self._open[self.name]
        listed = [ServedModel(self.name, default.label, default.recall is not None)]
        if self.persona is None:
            return listed
        listed.append(ServedModel(BASE, redact(self.base_spec()), memories))  # no credentials
        for record in load_records(self.persona):
            if record.status == SUCCEEDED and record.is_chat_model:
                listed.append(
                    ServedModel(record.id, record.id, memories and record.dataset != "plain")
                )
        return listed

    def get(self, name: str) -> Replica:
        """The replica answering as `name`, opened now if it is not yet; UsageError for a
        name not served. Opening one model never holds up requests for the others."""
        with self._lock:
            if name in self._open:
                return self._open[name]
            opening = self._opening.setdefault(name, threading.Lock())
        with opening:  # one opening per name, however many requests ask at once
            if name not in self._open:
                known = [m.id for m in self.models()]
                if name not in known:
                    raise UsageError(
                        f"no model {name!r} is served here (known: {', '.join(known)})"
                    )
                choice = self.base_spec() if name == BASE else name
                replica = open_replica(self.persona, choice, self.settings, self.generator)
                with self._lock:
                    self._open[name] = replica
            return self._open[name]

    def base_spec(self) -> str:
        return str(Workspace.open(self.persona, generator=self.generator).spec("generator"))
