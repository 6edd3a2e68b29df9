"""chunk: tokens/s of `raft chunk` over a 5 MB corpus, against tiktoken alone on the same text."""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from benchmarks.common import SEED, Result, document, median_seconds

GOAL = 0.8  # of raw tokens/s


def write_corpus(path: Path, megabytes: float) -> list[str]:
    """A deterministic corpus.jsonl of documents from a few KB to tens of KB; their texts."""
    rng = random.Random(SEED)
    texts, size = [], 0
    with open(path, "w", encoding="utf-8") as handle:
        while size < megabytes * 1e6:
            n = len(texts)
            text = document(rng, rng.randint(4, 60))
            row = {
                "id": f"doc{n:05d}",
                "title": f"Essay {n}",
                "link": f"https://bench.example/p/essay-{n}",
                "date": f"20{10 + n % 15:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}",
                "content": text,
            }
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            texts.append(text)
            size += len(text.encode("utf-8"))
    return texts


def run(quick: bool) -> list[Result]:
    from raft.backends.tokens import encoding
    from raft.chunking import chunk_corpus
    from raft.paths import Persona

    megabytes, repeats = (0.5, 1) if quick else (5, 3)
    with tempfile.TemporaryDirectory(prefix="raft-bench-chunk-") as folder:
        persona = Persona("bench", Path(folder) / "bench")
        persona.root.mkdir()
        texts = write_corpus(persona.corpus, megabytes)
        enc = encoding()
        # Counted in this thread and in tiktoken's pool, so neither side pays a first call.
        tokens = sum(len(enc.encode_ordinary(text)) for text in texts)
        enc.encode_ordinary_batch(texts)
        raw = median_seconds(lambda: enc.encode_ordinary_batch(texts), repeats)
        raw_one_thread = median_seconds(lambda: [enc.encode_ordinary(t) for t in texts], repeats)
        ours = median_seconds(lambda: chunk_corpus(persona), repeats)
        stats = chunk_corpus(persona)
    ratio = raw / ours
    # Each sentence is encoded to plan the chunks, then each chunk again (its overlap included)
    # so that every n_tokens is exact: the text is encoded this many times over.
    encoded = 1 + stats.tokens / tokens
    note = (
        f"{len(texts)} documents, {megabytes:g} MB, {tokens:,} tokens -> {stats.chunks:,} "
        "chunks; raft = chunk_corpus in one process (--max-tokens 512 --overlap 64; reads "
        "corpus.jsonl, writes chunks.jsonl); raw = encode_ordinary_batch (a thread per core) "
        f"over the texts already in memory; raw on one thread: {tokens / raw_one_thread:,.0f} "
        f"tokens/s. raft encodes the text {encoded:.2f} times (each sentence to plan the "
        "chunks, then each chunk with its overlap) so that every chunk's token count is "
        f"exact: on one thread that is {encoded * raw_one_thread:.2f} s of its "
        f"{ours:.2f} s; the rest is splitting sentences, planning, JSON and hashing. Its "
        f"ceiling is about {1 / encoded:.2f}x of one-thread raw. Not fixed on purpose: worker "
        "processes "
        "(tried: byte-identical output, about 1.7x on 2 cores) cost ~100 lines of fork and "
        "orphan handling for a stage that chunks 5 MB in about a second, while embedding the "
        "same corpus takes minutes; the goal needs estimated instead of exact counts."
    )
    return [
        Result(
            stage="chunk",
            measured=f"tokens/s ({megabytes:g} MB corpus)",
            value=tokens / ours,
            raw=tokens / raw,
            ratio=ratio,
            goal=f">= {GOAL:g}x raw",
            met=ratio >= GOAL,
            note=note,
        )
    ]
