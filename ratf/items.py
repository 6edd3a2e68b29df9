"""`raft bench:setup`: benchmark items from the held-out interviews.

Each exchange becomes an item with the real history so far and the memories the replica
would recall live: writing dated before the interview, judged from the question alone,
by the same recall ft:gen used. Items are the fixed input of every `ratf run`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from raft.check import corpus_chunks, find_held_out, held_out_texts
from raft.errors import RaftError, UsageError
from raft.files import read_jsonl, write_jsonl
from raft.paths import Persona
from raft.replica import Replica, ReplicaSettings, Turn, complete_settings, open_recall
from raft.transcripts import Interview, load_interviews, training_interviews


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


def interview_items(replica: Replica, interview: Interview, progress: Any = None) -> list[dict]:
    """One item per exchange, in order; each carries the history and its memories."""
    settings = replace(
        replica.settings,
        interviewer=interview.interviewer,
        date=interview.date,
        before=interview.date,
    )
    replica = Replica(replica.target, replica.model, replica.recall, settings, replica.label)
    history: list[Turn] = []
    items = []
    for number, (question, answer) in enumerate(interview.exchanges):
        recalled = replica.recall.recall(question, before=interview.date)
        useful = [m for m in recalled if m.useful]
        items.append(
            {
                "id": f"{interview.id}#{number}",
                "interview": interview.id,
                "date": interview.date,
                "interviewer": interview.interviewer,
                "target": replica.target,
                "index": number,
                "question": question,
                "answer": answer,
                "history": [
                    {
                        "question": t.question,
                        "answer": t.reply,
                        "kept": [m.chunk_id for m in t.memories],
                    }
                    for t in history
                ],
                "memories": [m.row() for m in recalled],
                "kept": [m.chunk_id for m in useful],
                "next_question": (
                    interview.exchanges[number + 1][0]
                    if number + 1 < len(interview.exchanges)
                    else ""
                ),
                "messages": replica.messages(history, question, useful),
                "messages_no_memories": replica.messages(
                    [Turn(t.question, t.reply) for t in history], question, []
                ),
            }
        )
        history.append(Turn(question, answer, useful))
        if progress is not None:
            progress()
    return items


def build_items(
    persona: Persona, oai: bool, generator: str | None = None, bar: Any = None
) -> list[dict]:
    """Write bench/items.jsonl (and with `oai`, bench/openai.jsonl); returns the items."""
    benchmark = load_interviews(persona.benchmark, benchmark=True)
    if not benchmark:
        raise UsageError(
            f"no held-out interviews in {persona.benchmark}: add one with "
            f"`raft transcript:add {persona.name} FILE --benchmark`"
        )
    check_no_leak(persona)
    recall = open_recall(persona, generator)
    settings = complete_settings(persona, ReplicaSettings())
    replica = Replica(recall.target, None, recall, settings, label="bench:setup")
    total = sum(len(i.exchanges) for i in benchmark)
    task = bar.add_task("bench:setup items", total=total) if bar else None
    items = []
    for interview in benchmark:
        items += interview_items(replica, interview, (lambda: bar.advance(task)) if bar else None)
    made = {**recall.made(), "max_context": settings.max_context}
    for item in items:
        item["made"] = made
    write_jsonl(items_path(persona), items)
    if oai:
        write_jsonl(
            persona.bench / "openai.jsonl",
            [{"id": i["id"], "messages": i["messages"]} for i in items],
        )
        write_jsonl(
            persona.bench / "openai.no-memories.jsonl",
            [{"id": i["id"], "messages": i["messages_no_memories"]} for i in items],
        )
    return items


def load_items(persona: Persona) -> list[dict]:
    path = items_path(persona)
    if not path.is_file():
        raise UsageError(f"no benchmark items: run `raft bench:setup {persona.name}` first")
    return list(read_jsonl(path))
