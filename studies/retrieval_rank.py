"""Retrieval variants for the retrieval study (studies.retrieval): the author's writing
ranked for a query by MiniLM cosine (dense), BM25 (bm25s) or their reciprocal-rank fusion,
cut into chunks, paragraphs or sentences, and scored by recall@k of the annotated sources.

Only the writing (store records of kind "chunk", as the oracle reads) dated strictly
before the conversation competes; the ranking is exact, in memory, over the persona's
chunks.jsonl embedded by the persona's (cached) embedder: the store's ranking, made exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from raft.extractive import extract, paragraphs
from raft.memory import Memory
from raft.memory_quality import source_match
from raft.nearest import rank_pieces
from raft.oracle import prose_sentences
from raft.store import date_num

POOL = 12  # top chunks whose paragraphs or sentences compete, as oracle.py's pool does
RRF_K = 60  # the usual reciprocal-rank fusion constant (Cormack et al. 2009)
UNITS = ("chunk", "paragraph", "sentence")
QUERIES = ("question", "previous", "hyde")
RANKINGS = ("dense", "bm25", "hybrid")
KS = (1, 2, 4, 6)


@dataclass(frozen=True)
class Variant:
    """One way of retrieving: what a memory is, how many, the query, the ranking."""

    unit: str = "chunk"
    k: int = 6
    query: str = "question"
    ranking: str = "dense"

    @property
    def name(self) -> str:
        return f"{self.unit}/k{self.k}/{self.query}/{self.ranking}"


@dataclass
class Turn:
    """One interview exchange to retrieve for: training or held-out."""

    id: str
    date: str
    interviewer: str
    question: str
    answer: str
    previous: str  # the previous answer in the interview, "" for the first
    sources: list[str]
    held_out: bool
    hyde: str = ""  # the replica's own hypothetical answer, when made


def rrf(*rankings: Sequence[int]) -> list[int]:
    """Reciprocal-rank fusion: indices ordered by the sum of 1/(RRF_K + rank) over the
    rankings (rank from 1); a tie keeps the first ranking's order."""
    score: dict[int, float] = {}
    for ranking in rankings:
        for rank, index in enumerate(ranking, 1):
            score[index] = score.get(index, 0.0) + 1.0 / (RRF_K + rank)
    first = {index: n for n, index in enumerate(rankings[0])} if rankings else {}
    return sorted(score, key=lambda i: (-score[i], first.get(i, len(first))))


def recall_at(memories: Sequence[Memory], sources: Sequence[str], k: int) -> float | None:
    """Share of the exchange's source essays among the first k memories' documents."""
    names = list(dict.fromkeys(s for s in sources if s.strip()))
    if not names:
        return None
    top = list(memories)[:k]
    return sum(any(source_match(m, [name]) for m in top) for name in names) / len(names)


class Writing:
    """The persona's chunks, embedded and BM25-indexed once, ranked per query."""

    def __init__(self, chunks_path, embedder):
        import bm25s

        self.rows = [json.loads(line) for line in chunks_path.read_text().splitlines() if line]
        self.embedder = embedder
        self.vectors = np.asarray(embedder.embed([r["text"] for r in self.rows]))
        self.dates = np.array([date_num(r.get("date") or "") for r in self.rows])
        self.bm25 = bm25s.BM25()
        tokens = bm25s.tokenize([r["text"] for r in self.rows], show_progress=False)
        self.bm25.index(tokens, show_progress=False)

    def query_text(self, turn: Turn, query: str) -> str:
        if query == "previous" and turn.previous:
            return f"{turn.previous}\n\n{turn.question}"  # as Recall.retrieve joins them
        if query == "hyde":
            return turn.hyde or turn.question
        return turn.question

    def _bm25_scores(self, text: str) -> np.ndarray:
        import bm25s

        words = bm25s.tokenize([text], return_ids=False, show_progress=False)[0]
        return np.asarray(self.bm25.get_scores(words), dtype=float)

    def rank(self, text: str, before: str, ranking: str) -> tuple[list[int], np.ndarray]:
        """Chunk indices dated before `before`, best first, and every chunk's cosine."""
        cosine = self.vectors @ np.asarray(self.embedder.embed([text]))[0]
        allowed = np.flatnonzero(self.dates < date_num(before))
        dense = sorted(allowed.tolist(), key=lambda i: -cosine[i])
        if ranking == "dense":
            return dense, cosine
        lexical = self._bm25_scores(text)
        bm25 = sorted(allowed.tolist(), key=lambda i: -lexical[i])
        return (bm25 if ranking == "bm25" else rrf(dense, bm25)), cosine

    def _memory(self, index: int, cosine: float, start: int | None = None) -> Memory:
        row = self.rows[index]
        chunk_id = row["id"] if start is None else f"{row['id']}@{start}"
        return Memory(
            chunk_id, str(row.get("doc_id") or row["id"]), str(row.get("title") or ""),
            str(row.get("link") or ""), str(row.get("date") or ""), row["text"],
            round(1.0 - float(cosine), 6),
        )  # fmt: skip

    def retrieve(self, turn: Turn, variant: Variant, k: int | None = None) -> list[Memory]:
        """The variant's memories for the turn, best first, each with the text the memory
        slot shows in `rephrased`: for chunks, today's extractive span for the question."""
        k = k or variant.k
        text = self.query_text(turn, variant.query)
        order, cosine = self.rank(text, turn.date, variant.ranking)
        if variant.unit == "chunk":
            memories = [self._memory(i, cosine[i]) for i in order[:k]]
            spans = extract(turn.question, [m.text for m in memories], self.embedder)
            for memory, span in zip(memories, spans, strict=True):
                memory.rephrased = span
            return memories
        return self._units(text, order[:POOL], variant.unit, k)

    def _units(self, text: str, pool: list[int], unit: str, k: int) -> list[Memory]:
        """The paragraphs or prose sentences of the pool's chunks nearest the query."""
        cut = prose_sentences if unit == "sentence" else paragraphs
        bodies = ((index, self.rows[index]["text"]) for index in pool)
        memories = []
        for index, start, piece, cosine in rank_pieces(self.embedder, text, bodies, cut, k):
            memory = self._memory(index, cosine, start)
            memory.rephrased = piece
            memories.append(memory)
        return memories


# -- Gates: which retrieved memories the slot keeps --------------------------------------


def gate_floor(memories: list[Memory], within: float | None, floor: float | None) -> list[Memory]:
    """Keep memories within `within` cosine distance of the best, and/or at most `floor`."""
    if not memories:
        return []
    best = min(m.distance for m in memories)
    return [
        m
        for m in memories
        if (within is None or m.distance - best <= within)
        and (floor is None or m.distance <= floor)
    ]


@dataclass(frozen=True)
class GateScore:
    """A gate against the sources on the retrieved memories of exchanges with sources."""

    kept: int
    relevant: int  # retrieved memories from a source essay
    relevant_kept: int

    @property
    def precision(self) -> float | None:
        return round(self.relevant_kept / self.kept, 4) if self.kept else None

    @property
    def recall(self) -> float | None:
        return round(self.relevant_kept / self.relevant, 4) if self.relevant else None

    @property
    def f1(self) -> float:
        p, r = self.precision or 0.0, self.recall or 0.0
        return 2 * p * r / (p + r) if p + r else 0.0


def gate_score(pairs: Sequence[tuple[list[Memory], list[Memory], list[str]]]) -> GateScore:
    """(retrieved, kept, sources) per exchange -> precision/recall of what was kept."""
    kept = relevant = relevant_kept = 0
    for retrieved, chosen, sources in pairs:
        if not sources:
            continue
        ids = {m.chunk_id for m in chosen}
        for memory in retrieved:
            hit = source_match(memory, sources)
            relevant += hit
            kept += memory.chunk_id in ids
            relevant_kept += hit and memory.chunk_id in ids
    return GateScore(kept, relevant, relevant_kept)
