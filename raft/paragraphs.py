"""Paragraph memories: the author's paragraphs nearest the question, each shown whole.

The spec's `unit` "paragraph" (`raft ft:gen --unit paragraph`): the paragraphs of the
question's top chunks compete, ranked by cosine to the query, as studies/retrieval_rank.py
ranked them when docs/retrieval.md measured them. Only the author's writing (store records
of kind "chunk") competes, as in that study: an earlier interview's record opens with the
interviewer's question, which is not the author's paragraph.
"""

from __future__ import annotations

from raft.extractive import paragraphs
from raft.memory import Memory
from raft.nearest import nearest_pieces
from raft.store import Store

POOL = 12  # top chunks whose paragraphs compete, as in the study


def paragraph_memories(
    store: Store, query: str, before: str | None, k: int, exclude_doc: str | None = None
) -> list[Memory]:
    """The `k` distinct paragraphs of writing dated before `before` nearest `query`, nearest
    first, each shown verbatim; one embedding call."""
    return nearest_pieces(store, query, before, k, POOL, paragraphs, exclude_doc)
