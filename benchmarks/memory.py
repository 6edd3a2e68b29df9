"""memory: peak RSS of `raft embed` (the real CLI) on 10k and on 100k chunks, fresh folders."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from benchmarks.common import BIN, Result, raft_env, run_measured
from benchmarks.embed import chunk_rows, write_chunks

GOAL_MB = 2048
FLAT = 1.25  # "flat in corpus size": the larger corpus's peak within this factor of the smaller's
DISTINCT = 5_000  # texts repeat after this many chunks, so MiniLM embeds at most 5k texts
# A child's ru_maxrss starts at the high-water RSS of the process that spawned it (Linux keeps
# it across exec), and this process is big after the in-process stages, so `raft embed` is
# started by a small launcher that writes the clean figure (KB) to the file named first.
LAUNCHER = (
    "import os, pathlib, subprocess, sys; child = subprocess.Popen(sys.argv[2:]); "
    "_, status, usage = os.wait4(child.pid, 0); "
    "pathlib.Path(sys.argv[1]).write_text(str(usage.ru_maxrss)); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def peak_rss(command: list[str], env: dict[str, str], report: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in MB) of `command` alone."""
    seconds, _ = run_measured([sys.executable, "-c", LAUNCHER, str(report), *command], env)
    return seconds, int(report.read_text()) // 1024


def run(quick: bool) -> list[Result]:
    sizes = (1_000, 5_000) if quick else (10_000, 100_000)
    peaks: dict[int, int] = {}
    seconds: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="raft-bench-memory-") as tmp:
        for size in sizes:
            data = Path(tmp) / f"data{size}"
            write_chunks(data / "bench", chunk_rows(size, sentences=(1, 1), distinct=DISTINCT))
            command = [str(BIN / "raft"), "embed", "bench"]
            seconds[size], peaks[size] = peak_rss(command, raft_env(data), data / "maxrss")
    small, large = sizes
    growth = peaks[large] / peaks[small]
    per_chunk_kb = (peaks[large] - peaks[small]) * 1024 / (large - small)
    vectors_mb = (large - small) * 384 * 4 / 2**20
    note = (
        f"`raft embed` in a fresh persona folder, peak RSS of that process (ru_maxrss): "
        f"{peaks[small]:,} MB at {small:,} chunks ({seconds[small]:.0f} s), {peaks[large]:,} MB "
        f"at {large:,} ({seconds[large]:.0f} s): {growth:.2f}x, {per_chunk_kb:.1f} KB a chunk; "
        f"flat means within {FLAT}x. Chunks are one sentence (~10-25 tokens) and texts repeat "
        f"after {DISTINCT:,} chunks, so MiniLM computes {DISTINCT:,} embeddings (the cache "
        "answers the rest) and the stage fits its time; Chroma stores every chunk. Embedded "
        "Chroma keeps the collection's HNSW index in memory: its float32 vectors alone are "
        f"1.5 KB a chunk ({vectors_mb:.0f} MB more at {large:,}), plus graph links and id maps; "
        "raft streams chunks.jsonl and keeps only the ids it has seen (~0.1 KB a chunk, "
        "measured with tracemalloc)."
    )
    return [
        Result(
            stage="memory",
            measured=f"peak RSS MB, raft embed {large // 1000}k chunks",
            value=peaks[large],
            raw=None,
            ratio=growth,
            goal=f"< {GOAL_MB / 1024:.0f} GB, flat (≤ {FLAT}x of {small // 1000}k)",
            met=peaks[large] < GOAL_MB and growth <= FLAT,
            note=note,
        )
    ]
