"""What the stage benchmarks share: timing, peak memory, synthetic text, the result rows."""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
SEED = 20261123

VOCABULARY = (
    "repair kettle solder hinge ledger workshop spring patina screw glue clock radio bench "
    "neighbour library drawer bridge paint city memory habit thread needle lamp brass winter "
    "market street river garden honey bread the a of and to in that it is was for on with as "
    "I you we they this but not what all when there can one would about so because"
)


@dataclass
class Result:
    """One row of the table: a measurement, its raw reference where there is one, the goal."""

    stage: str
    measured: str  # what was measured, with its unit
    value: float
    raw: float | None  # the raw reference in the same run, same unit
    ratio: float | None  # how the value compares with raw (the goal's terms)
    goal: str
    met: bool | None  # None: not measured (say why in `note`)
    note: str = ""


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `action` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paragraph(rng: random.Random, sentences: int = 5) -> str:
    """Deterministic prose-like text: sentences of common and on-topic words."""
    out, vocabulary = [], VOCABULARY.split()
    for _ in range(sentences):
        words = rng.choices(vocabulary, k=rng.randint(8, 22))
        out.append(" ".join(words).capitalize() + rng.choice([".", ".", ".", "?", "!"]))
    return " ".join(out)


def document(rng: random.Random, paragraphs: int) -> str:
    return "\n\n".join(paragraph(rng) for _ in range(paragraphs))


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; returns (wall seconds, peak RSS in MB of that process alone)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed: {stderr[-2000:]}")
    return seconds, usage.ru_maxrss // 1024  # Linux reports KB


def raft_env(data: Path) -> dict[str, str]:
    """The environment a benchmarked raft command runs in: its own data folder, offline."""
    return {
        "RAFT_DATA_DIR": str(data),
        "RAFT_KEY_FILE": str(data / "no-keys.toml"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
