"""memory: peak RSS of `raft embed` (the real CLI) on 100k chunks, and whether it grows with them.

Embedded Chroma (the default) keeps the collection's HNSW index inside the raft process, so
that process must grow with the collection. Whether raft's own part is flat is measured on
the same corpora with the index in a `chroma run` server on 127.0.0.1.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import BIN, Result, free_port, raft_env, run_measured, serving
from benchmarks.embed import chunk_rows, write_chunks

GOAL_MB = 2048
FLAT = 1.1  # "flat in corpus size": the larger corpus's peak within this factor of the smaller's
DISTINCT = 2_000  # texts repeat after this many chunks, so MiniLM embeds at most 2k texts


def run(quick: bool) -> list[Result]:
    sizes = (1_000, 5_000) if quick else (10_000, 100_000)
    small, large = sizes
    command = [str(BIN / "raft"), "embed", "bench"]
    with tempfile.TemporaryDirectory(prefix="raft-bench-memory-") as tmp:
        folders = {size: Path(tmp) / f"data{size}" for size in sizes}
        for size, data in folders.items():
            write_chunks(data / "bench", chunk_rows(size, sentences=(1, 1), distinct=DISTINCT))
        # The server runs first, so the embedded run below starts with an empty cache too.
        served: dict[int, int] = {}
        for size, data in folders.items():
            url = f"http://127.0.0.1:{(port := free_port())}"
            server = [str(BIN / "chroma"), "run", "--path", str(data / "chroma-server")]
            server += ["--host", "127.0.0.1", "--port", str(port)]
            with serving(server, f"{url}/api/v2/heartbeat"):
                _, served[size] = run_measured(command, raft_env(data) | {"RAFT_CHROMA_URL": url})
            (data / "bench" / "cache.sqlite").unlink()
        seconds, peak = run_measured(command, raft_env(folders[large]))
    growth = served[large] / served[small]
    index_mb = peak - served[large]
    note = (
        f"`raft embed` in a fresh persona folder, peak RSS of that process alone (ru_maxrss). "
        f"Chunks are one sentence (~10-25 tokens) and texts repeat after {DISTINCT:,} chunks, "
        f"so MiniLM computes {DISTINCT:,} embeddings and the stage fits its time; Chroma "
        f"stores every chunk. Embedded Chroma (the default): {peak:,} MB at {large:,} chunks "
        f"({seconds:.0f} s). With the index in a `chroma run` server: {served[small]:,} MB at "
        f"{small:,} chunks, {served[large]:,} MB at {large:,} ({growth:.2f}x; flat means "
        f"within {FLAT}x): raft streams chunks.jsonl and keeps only the ids it has seen. The "
        f"difference at {large:,}, {index_mb:,} MB ({index_mb * 1024 / large:.1f} KB a chunk), "
        "is embedded Chroma in the process, mostly its in-memory HNSW index (the float32 "
        "vectors alone are 1.5 KB a chunk), which grows with the collection by design; a "
        "corpus whose index outgrows memory belongs in a Chroma server."
    )
    return [
        Result(
            stage="memory",
            measured=f"peak RSS MB, raft embed {large // 1000}k chunks, embedded Chroma",
            value=peak,
            raw=None,
            ratio=None,
            goal=f"< {GOAL_MB / 1024:.0f} GB",
            met=peak < GOAL_MB,
        ),
        Result(
            stage="memory",
            measured=f"peak RSS MB, raft embed {large // 1000}k chunks, Chroma server",
            value=served[large],
            raw=None,
            ratio=growth,
            goal=f"flat: ≤ {FLAT}x of {small // 1000}k",
            met=growth <= FLAT,
            note=note,
        ),
    ]
