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
from raft.store import Store

POOL = 8  # passages nearest the answer whose sentences compete


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
    hits = store.query(
        answer, k=POOL, before_date=before, kinds=("chunk",), exclude_doc=exclude_doc
    )
    spans, seen = [], set()
    for hit in hits:
        for sentence in sentences(hit.text):
            text = hit.text[sentence.start : sentence.end].strip()
            key = " ".join(text.lower().split())
            if sentence.prose and key not in seen:
                seen.add(key)
                spans.append((hit, sentence.start, text))
    if not spans:
        return []
    vectors = store.embedder.embed([answer, *(text for _, _, text in spans)])
    scores = (vectors[1:] @ vectors[0]).tolist()
    ranked = sorted(range(len(spans)), key=lambda i: -scores[i])[:n]
    memories = []
    for i in ranked:
        hit, start, text = spans[i]
        memory = Memory.from_hit(hit)
        memory.chunk_id = f"{hit.id}@{start}"  # one chunk may give both sentences
        memory.distance = round(1.0 - scores[i], 6)
        memory.rephrased = text
        memory.useful = memory.consistent = True
        memory.oracle = True
        memories.append(memory)
    return memories
