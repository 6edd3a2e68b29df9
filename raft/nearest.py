"""Pieces of the author's writing nearest a text: the sentences or paragraphs of the chunks
nearest it, ranked against it in one embedding call, each a memory shown verbatim.

The oracle (sentences nearest the real answer) and paragraph memories (paragraphs nearest
the question) are this one ranking with a different query and cut.
"""

from __future__ import annotations

from collections.abc import Callable

from raft.memory import Memory
from raft.store import Store

Pieces = Callable[[str], list[tuple[int, str]]]  # a chunk's text -> (offset, piece) pairs


def nearest_pieces(
    store: Store,
    query: str,
    before: str | None,
    n: int,
    pool: int,
    pieces: Pieces,
    exclude_doc: str | None = None,
) -> list[Memory]:
    """The `n` distinct pieces of the `pool` chunks of writing dated before `before` nearest
    `query`, nearest first; each a memory whose `rephrased` is the piece and whose id is
    `CHUNK@OFFSET` (one chunk may give several)."""
    hits = store.query(query, k=pool, before_date=before, kinds=("chunk",), exclude_doc=exclude_doc)
    found, seen = [], set()
    for hit in hits:
        for start, text in pieces(hit.text):
            key = " ".join(text.lower().split())
            if key not in seen:
                seen.add(key)
                found.append((hit, start, text))
    if not found:
        return []
    vectors = store.embedder.embed([query, *(text for _, _, text in found)])
    scores = (vectors[1:] @ vectors[0]).tolist()
    memories = []
    for i in sorted(range(len(found)), key=lambda i: -scores[i])[:n]:
        hit, start, text = found[i]
        memory = Memory.from_hit(hit)
        memory.chunk_id = f"{hit.id}@{start}"
        memory.distance = round(1.0 - scores[i], 6)
        memory.rephrased = text
        memories.append(memory)
    return memories
