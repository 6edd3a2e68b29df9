"""`raft bench:setup`: benchmark items from the held-out interviews.

Each exchange becomes an item with the real history so far and the memories the replica
would recall live: writing dated before the interview, judged from the question alone, by
the recall the training data's conversation spec describes. Items are the fixed input of
every `ratf run`, which renders each prompt with the same function as training and chat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.check import corpus_chunks, find_held_out, held_out_texts
from raft.console import Tally
from raft.conversation import (
    Budget,
    ConversationSpec,
    Exchange,
    Message,
    render,
    system_prompt,
)
from raft.errors import RaftError, UsageError
from raft.files import read_jsonl, write_jsonl
from raft.memory import Memory
from raft.oracle import oracle_memories
from raft.paths import Persona
from raft.replica import Replica, ReplicaSettings, open_recall, persona_spec
from raft.transcripts import Interview, load_interviews, training_interviews
from raft.workspace import Workspace

if TYPE_CHECKING:
    from rich.progress import Progress


@dataclass
class BenchItem:
    """One held-out exchange: a line of `bench/items.jsonl`."""

    id: str
    interview: str
    date: str
    interviewer: str
    target: str
    index: int
    question: str
    answer: str
    history: list[Exchange]  # the real earlier exchanges, with the memories their slots show
    memories: list[Memory]  # every memory recalled for the question
    kept: list[str]  # those judged useful from the question alone
    next_question: str
    sources: list[str] = field(default_factory=list)  # essays the answer draws on, if known
    # The earlier sentences nearest the real answer: read only by the likelihood ceiling
    # (`+oracle`), never shown to a replica; empty in items written before it existed.
    oracle: list[Memory] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)  # the prompt, under the spec budget
    messages_no_memories: list[Message] = field(default_factory=list)
    made: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ConversationSpec:
        return ConversationSpec.from_row(self.made["spec"])

    def kept_memories(self) -> list[Memory]:
        return [m for m in self.memories if m.chunk_id in self.kept]

    def prompt(
        self, budgets: list[Budget], memories: bool = True, oracle: bool = False
    ) -> list[Message]:
        """The prompt a replica with these budgets sees, rendered as training renders.
        `oracle=True` (the likelihood ceiling alone) shows the oracle memories in the
        question's slot instead of the kept ones, the history as with memories."""
        history = (
            self.history
            if memories or oracle
            else [Exchange(h.question, h.answer) for h in self.history]
        )
        system = system_prompt(self.target, self.interviewer, self.date)
        shown = self.oracle if oracle else self.kept_memories() if memories else []
        block = self.spec.history_block
        return render(system, history, self.question, shown, budgets, block=block).messages

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["history"] = [
            {"question": h.question, "answer": h.answer, "memories": [m.row() for m in h.memories]}
            for h in self.history
        ]
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BenchItem:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["memories"] = [Memory.from_row(m) for m in row["memories"]]
        values["oracle"] = [Memory.from_row(m) for m in row.get("oracle") or []]
        values["history"] = [
            Exchange(h["question"], h["answer"], [Memory.from_row(m) for m in h["memories"]])
            for h in row["history"]
        ]
        return cls(**values)


def items_path(persona: Persona) -> Path:
    return persona.bench / "items.jsonl"


def check_no_leak(persona: Persona) -> None:
    """Refuse when a held-out interview is in training, or its text is in the corpus."""
    training_interviews(persona)  # the same interview in both folders
    problem = find_held_out(corpus_chunks(persona), held_out_texts(persona))
    if problem:
        raise RaftError(
            f"{problem}: the held-out interview is in the corpus; remove it from the sources "
            "and re-run fetch, chunk and embed"
        )


def interview_items(
    replica: Replica, interview: Interview, advance: Callable[[], None] | None = None
) -> list[BenchItem]:
    """One item per exchange, in order; each carries the history and its memories."""
    replica = replica.with_settings(
        interviewer=interview.interviewer, date=interview.date, before=interview.date
    )
    history: list[Exchange] = []
    items = []
    for number, (question, answer) in enumerate(interview.exchanges):
        recalled = replica.recalled(question, history)
        useful = [m for m in recalled if m.useful]
        items.append(
            BenchItem(
                id=f"{interview.id}#{number}",
                interview=interview.id,
                date=interview.date,
                interviewer=interview.interviewer,
                target=replica.target,
                index=number,
                question=question,
                answer=answer,
                history=list(history),
                memories=recalled,
                kept=[m.chunk_id for m in useful],
                next_question=(
                    interview.exchanges[number + 1][0]
                    if number + 1 < len(interview.exchanges)
                    else ""
                ),
                sources=list(interview.sources[number]) if interview.sources else [],
                messages=replica.messages(history, question, useful),
                messages_no_memories=replica.messages(
                    [Exchange(h.question, h.answer) for h in history], question, []
                ),
            )
        )
        history.append(Exchange(question, answer, useful))
        if advance is not None:
            advance()
    return items


def write_openai_prompts(persona: Persona, items: list[BenchItem]) -> None:
    """The prompts, with and without memories, in OpenAI chat format for any system."""
    write_jsonl(
        persona.bench / "openai.jsonl", [{"id": i.id, "messages": i.messages} for i in items]
    )
    write_jsonl(
        persona.bench / "openai.no-memories.jsonl",
        [{"id": i.id, "messages": i.messages_no_memories} for i in items],
    )


def build_items(
    persona: Persona,
    only: str | None = None,
    generator: str | None = None,
    progress: Progress | None = None,
) -> list[BenchItem]:
    """Write bench/items.jsonl and the OpenAI prompt files; returns the items.

    `only="oai"` rewrites the OpenAI files from the existing items without a model call;
    `only="generic"` writes the items alone."""
    if only == "oai":
        items = load_items(persona)
        write_openai_prompts(persona, items)
        return items
    benchmark = load_interviews(persona.benchmark, benchmark=True)
    if not benchmark:
        raise UsageError(
            f"no held-out interviews in {persona.benchmark}: add one with "
            f"`raft transcript:add {persona.name} FILE --benchmark`"
        )
    check_no_leak(persona)
    ws = Workspace.open(persona)
    spec = persona_spec(ws)
    recall = open_recall(ws, spec, generator)
    replica = Replica(spec, None, recall, ReplicaSettings(), [spec.budget], "bench:setup")
    total = sum(len(i.exchanges) for i in benchmark)
    tally = Tally(progress, "bench:setup items", total)
    items = []
    for interview in benchmark:
        items += interview_items(replica, interview, tally.advance)
    for item in items:  # for the likelihood ceiling only: never in a replica's prompt
        item.oracle = oracle_memories(recall.store, item.answer, item.date, spec.oracle_sentences)
    made = {"spec": spec.to_row(), "generator_id": recall.llm.model_id}
    for item in items:
        item.made = made
    write_jsonl(items_path(persona), [item.to_row() for item in items])
    if only != "generic":
        write_openai_prompts(persona, items)
    return items


def load_items(persona: Persona) -> list[BenchItem]:
    path = items_path(persona)
    if not path.is_file():
        raise UsageError(f"no benchmark items: run `raft bench:setup {persona.name}` first")
    return [BenchItem.from_row(row) for row in read_jsonl(path)]
