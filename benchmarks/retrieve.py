"""retrieve: p50 / p95 latency of `Store.query` as recall calls it, at 10k and 100k chunks.

Embedding 100k chunks with MiniLM takes hours on a laptop CPU, so the collection is filled
through `Store.sync` by a stand-in embedder (seeded random unit vectors of MiniLM's size);
the timed queries embed each question with the real MiniLM, as ft:gen and chat do.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import SEED, Result
from benchmarks.embed import DAYS, FIRST, chunk_rows

K = 12  # recall asks the store for twice the spec's k (6 by default), then drops repeats
GOAL_MS = 20.0
TOPICS = (
    "repair kettle solder hinge ledger workshop spring patina screw glue clock radio bench "
    "neighbour library drawer bridge paint city memory habit thread needle lamp brass winter "
    "market street river garden honey bread"
)
INCLUDE = ["documents", "metadatas", "distances"]


class StandInEmbedder:
    """MiniLM's name and size with a seeded random unit vector per text (fills in seconds)."""

    model_id = "local:all-MiniLM-L6-v2"  # so the real MiniLM may query the collection
    batch_size = 1024  # large upserts: the fill is setup, not what is measured

    def embed(self, texts: list[str]) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.sha256(text.encode()).digest()[:8]) for text in texts]
        vectors = np.vstack(
            [np.random.default_rng(seed).standard_normal(384, dtype=np.float32) for seed in seeds]
        )
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def questions(rng: random.Random, n: int) -> list[str]:
    """`n` distinct interview-like questions, so no timed query finds its embedding cached."""
    out: dict[str, None] = {}
    while len(out) < n:
        a, b, c = rng.sample(TOPICS.split(), 3)
        out[f"What did {a} and {b} teach you about the {c}?"] = None
    return list(out)


def before_dates(rng: random.Random, n: int) -> list[str]:
    """Interview dates spread evenly over the corpus: the filter admits 0-100% of it."""
    return [(FIRST + dt.timedelta(days=rng.randrange(DAYS))).isoformat() for _ in range(n)]


def latencies_ms(ask: Callable[[int], Any], n: int) -> list[float]:
    out = []
    for number in range(n):
        start = time.perf_counter()
        ask(number)
        out.append((time.perf_counter() - start) * 1000)
    return out


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def row(measured: str, values: list[float], raw: list[float], pick=p95) -> Result:
    value, floor = pick(values), pick(raw)
    return Result(
        stage="retrieve",
        measured=measured,
        value=value,
        raw=floor,
        ratio=value / floor,
        goal=f"< {GOAL_MS:.0f} ms",
        met=value < GOAL_MS,
    )


class Looks:
    """Counts the Chroma queries behind each Store.query: unfiltered looks, and filtered ones."""

    def __init__(self) -> None:
        self.unfiltered = self.filtered = 0

    @contextmanager
    def counting(self) -> Iterator[None]:
        from chromadb.api.models.Collection import Collection

        query = Collection.query

        def counted(collection: Any, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("where") is None:
                self.unfiltered += 1
            else:
                self.filtered += 1
            return query(collection, *args, **kwargs)

        Collection.query = counted  # type: ignore[method-assign]
        try:
            yield
        finally:
            Collection.query = query  # type: ignore[method-assign]


def measure(store: Any, model: Any, asked: list[str], dates: list[str], label: str) -> tuple:
    """The rows for one collection size, and a sentence on where the time went."""
    from raft.store import LOOKS, _where

    n = len(asked)
    collection = store._get()
    vectors = model.encode(asked, normalize_embeddings=True)
    wheres = [_where(date, True, None) for date in dates]
    paths: list[str] = []  # per question: "1", "2" (unfiltered looks), or "filtered"

    def ask(i: int) -> Any:
        return store.query(asked[i], k=K, before_date=dates[i])

    def ask_counted(i: int) -> Any:
        looks = Looks()
        with looks.counting():
            hits = ask(i)
        paths.append("filtered" if looks.filtered else str(looks.unfiltered))
        return hits

    def nearest(vector: np.ndarray, where: dict | None = None, n_results: int = K) -> Any:
        return collection.query(
            query_embeddings=vector[None, :], n_results=n_results, where=where, include=INCLUDE
        )

    full = latencies_ms(ask, n)  # each question new: MiniLM embeds it, the cache stores it
    cached = latencies_ms(ask_counted, n)  # the same again: the embedding comes from the cache
    # Raw: MiniLM's own encode and Chroma's unfiltered query, the floor of both.
    raw_full = latencies_ms(
        lambda i: nearest(model.encode([asked[i]], normalize_embeddings=True)[0]), n
    )
    raw_store = latencies_ms(lambda i: nearest(vectors[i]), n)
    encode = latencies_ms(lambda i: model.encode([asked[i]], normalize_embeddings=True), n)
    # Chroma's filtered query alone: what Store.query ran for every dated query before it
    # filtered the nearest records itself (a quarter of the questions: it is slow).
    sample = range(0, n, 4)
    filtered = latencies_ms(lambda i: nearest(vectors[sample[i]], wheres[sample[i]]), len(sample))
    rows = [
        row(f"query p50 ms, {label}", full, raw_full, p50),
        row(f"query p95 ms, {label}", full, raw_full),
        row(f"query p95 ms, {label}, store only", cached, raw_store),
    ]
    parts = []
    for path, what in (
        ("1", f"found {K} admitted records among the unfiltered nearest {LOOKS[0] * K}"),
        ("2", f"needed the wider look at {LOOKS[1] * K}"),
        ("filtered", "also ran Chroma's filtered query"),
    ):
        took = [ms for ms, went in zip(cached, paths, strict=True) if went == path]
        if took:
            parts.append(f"{len(took)} {what} (store-only p50 {p50(took):.1f} ms)")
    summary = (
        f"{label}: MiniLM's encode of one question p50 {p50(encode):.1f} ms, p95 "
        f"{p95(encode):.1f} ms; of {n} questions, {', '.join(parts)}; Chroma's filtered query "
        f"alone takes p50 {p50(filtered):.0f} ms, p95 {p95(filtered):.0f} ms (what every dated "
        "query cost before Store.query filtered the nearest records itself)."
    )
    return rows, summary


def run(quick: bool) -> list[Result]:
    import chromadb  # noqa: F401  (imported before timing)

    from raft.backends import models
    from raft.backends.embed import _load_sentence_transformer
    from raft.paths import Persona
    from raft.store import LOOKS, Store
    from raft.workspace import Workspace

    sizes, queries, warmup = ((500, 2_000), 30, 5) if quick else ((10_000, 100_000), 200, 20)
    rng = random.Random(SEED)
    rows = list(chunk_rows(sizes[-1], sentences=(2, 4)))
    results: list[Result] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="raft-bench-retrieve-") as tmp:
        persona = Persona("bench", Path(tmp) / "bench")
        persona.root.mkdir()
        filler = Store(persona, StandInEmbedder())
        store = Store(persona, Workspace.open(persona, embedder="local").embedder)
        model = _load_sentence_transformer(str(models.minilm_dir()))
        for size in sizes:
            # The smaller collection is every n-th row, so both span the same dates, and the
            # larger one grows from it by an incremental sync.
            start = time.perf_counter()
            filler.sync(rows[:: sizes[-1] // size])
            fill_seconds = time.perf_counter() - start
            asked = questions(rng, warmup + queries)
            dates = before_dates(rng, warmup + queries)
            for question, date in zip(asked[:warmup], dates[:warmup], strict=True):
                store.query(question, k=K, before_date=date)
            label = f"{size // 1000}k chunks" if size >= 1000 else f"{size} chunks"
            size_rows, summary = measure(store, model, asked[warmup:], dates[warmup:], label)
            results += size_rows
            notes.append(f"{summary} Filled in {fill_seconds:.0f} s.")
    note = (
        f"Store.query(question, k={K}, before_date=D) as recall calls it, {queries} distinct "
        "questions per size after a warm-up, D uniform over the corpus's 15 years. Rows "
        "without 'store only' are end to end, and the goal is theirs: MiniLM embeds the "
        "question (the cache stores it) and Chroma searches. 'Store only' asks the same "
        "questions again, so the embedding comes from the cache. Raw is MiniLM's encode plus "
        "Chroma's unfiltered query (store only: that query alone). The collection is filled "
        "through Store.sync with seeded random unit vectors (hard for HNSW: no clusters) and "
        "2-4 sentence texts. " + " ".join(notes)
    )
    if not all(result.met for result in results if "store only" in result.measured):
        note += (
            " Why the store misses the goal: a date early in the corpus admits too few records for "
            f"the unfiltered nearest {LOOKS[-1] * K} to hold {K}, and Chroma's filtered query "
            "then lists every admitted record from its SQLite metadata before searching, a "
            "cost that grows with the collection (Chroma's, not ours). HNSW parameters are "
            "not the cause: the unfiltered search is the raw column."
        )
    results[-1].note = note
    return results
