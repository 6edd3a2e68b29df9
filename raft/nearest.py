"""Pieces of the author's writing nearest a text: the sentences or paragraphs of the chunks
nearest it, ranked against it in one embedding call, each a memory shown verbatim.

The oracle (sentences nearest the real answer) and paragraph memories (paragraphs nearest
the question) are this one ranking with a different query and cut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from raft.memory import Memory
from raft.store import Store

if TYPE_CHECKING:
    from raft.backends.embed import Embedder

T = TypeVar("T")
Pieces = Callable[[str], list[tuple[int, str]]]  # a chunk's text -> (offset, piece) pairs


def rank_pieces(
    embedder: Embedder, query: str, texts: Iterable[tuple[T, str]], pieces: Pieces, n: int
) -> list[tuple[T, int, str, float]]:
    """The `n` distinct pieces of `texts` (each tagged with where it came from) nearest
    `query`, nearest first, as (tag, offset, piece, cosine); one embedding call."""
    found, seen = [], set()
    for tag, text in texts:
        for start, piece in pieces(text):
            key = " ".join(piece.lower().split())
            if key not in seen:
                seen.add(key)
                found.append((tag, start, piece))
    if not found:
        return []
    vectors = embedder.embed([query, *(piece for _, _, piece in found)])
    scores = (vectors[1:] @ vectors[0]).tolist()
    ranked = sorted(range(len(found)), key=lambda i: -scores[i])[:n]
    return [(*found[i], scores[i]) for i in ranked]


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
    memories = []
    for hit, start, piece, cosine in rank_pieces(
        store.embedder, query, ((hit, hit.text) for hit in hits), pieces, n
    ):
        memory = Memory.from_hit(hit)
        memory.chunk_id = f"{hit.id}@{start}"
        memory.distance = round(1.0 - cosine, 6)
        memory.rephrased = piece
        memories.append(memory)
    return memories
