"""What the stage benchmarks share: timing, peak memory, synthetic text, the result rows."""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

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


# A child's ru_maxrss starts at the high-water RSS of the process that spawned it (Linux keeps
# it across exec), and the bench process is big after the in-process stages, so a command is
# started by this small launcher, which writes the command's own figure (KB) to the file named
# first.
LAUNCHER = (
    "import os, pathlib, subprocess, sys; child = subprocess.Popen(sys.argv[2:]); "
    "_, status, usage = os.wait4(child.pid, 0); "
    "pathlib.Path(sys.argv[1]).write_text(str(usage.ru_maxrss)); "
    "sys.exit(os.waitstatus_to_exitcode(status))"
)


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run a command; returns (wall seconds, peak RSS in MB of that process alone)."""
    with tempfile.TemporaryDirectory(prefix="raft-bench-rss-") as folder:
        report = Path(folder) / "maxrss"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", LAUNCHER, str(report), *command],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{command} failed: {done.stderr[-2000:]}")
        return seconds, int(report.read_text()) // 1024  # Linux reports KB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(command: list[str], health: str, timeout: float = 180) -> Iterator[None]:
    """Run a server command until the block ends; enters once `health` answers 200."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[:3]} exited with {process.returncode}")
            try:
                if httpx.get(health, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not answer {health} in {timeout:.0f} s")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def raft_env(data: Path) -> dict[str, str]:
    """The environment a benchmarked raft command runs in: its own data folder, offline."""
    return {
        "RAFT_DATA_DIR": str(data),
        "RAFT_KEY_FILE": str(data / "no-keys.toml"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
