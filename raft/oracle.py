"""Oracle memories: the author's earlier sentences nearest the *real answer*.

The RAFT recipe trains on samples whose context holds the document the answer drew on (the
oracle) with probability P, and distractors otherwise, so that the model learns to use what
is relevant and to ignore what is not. No LLM decides what is relevant here: the oracle is
the sentences of the author's writing, dated before the conversation, most similar to what
the author then said. Only training (`ft:gen --oracle-p`) and the benchmark's ceiling rows
(`+oracle`) may read an answer; a replica at inference never has one.
"""

from __future__ import annotations

from raft.extractive import sentences
from raft.memory import Memory
from raft.nearest import nearest_pieces
from raft.store import Store

POOL = 8  # passages nearest the answer whose sentences compete


def prose_sentences(text: str) -> list[tuple[int, str]]:
    """The sentences of a chunk worth recalling, as (offset, verbatim text)."""
    spans = ((s.start, text[s.start : s.end].strip()) for s in sentences(text) if s.prose)
    return [(start, piece) for start, piece in spans if piece]


def oracle_memories(
    store: Store,
    answer: str,
    before: str | None,
    n: int = 2,
    exclude_doc: str | None = None,
) -> list[Memory]:
    """The `n` sentences of the author's writing dated before `before` that are nearest
    `answer`, each as a memory shown verbatim, nearest first; one embedding call."""
    if n < 1 or not answer.strip():
        return []
    memories = nearest_pieces(store, answer, before, n, POOL, prose_sentences, exclude_doc)
    for memory in memories:
        memory.useful = memory.consistent = True
        memory.oracle = True
    return memories
