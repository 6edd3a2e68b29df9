"""ft:gen against `python -m llama_cpp.server` on 127.0.0.1: the whole stage against the same
LLM requests replayed straight to the server with the same concurrency, then a warm re-run."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.common import (
    BIN,
    SEED,
    Result,
    document,
    free_port,
    paragraph,
    raft_env,
    run_measured,
    serving,
)

GOAL_RATIO = 1.15
GOAL_RERUN_SECONDS = 3.0
K = 1  # memories per question: three SmolLM2 calls an exchange (rephrase, two judges)
# The issue asks for 100 exchanges; on 2 CPU cores that is ~300 calls and 14 minutes for the
# run and its replay, most of the script's 20-minute budget. 30 measure the same per-call
# overhead; `EXCHANGES=100` in the environment runs the full size.
EXCHANGES = int(os.environ.get("EXCHANGES", "30"))


def write_persona(root: Path, exchanges: int) -> None:
    """Dated essays (2020-2022) and interviews of ten exchanges each (2023) to fetch and use."""
    rng = random.Random(SEED)
    essays = root / "essays"
    essays.mkdir(parents=True)
    for n in range(60):
        day = f"20{20 + n % 3}-{n % 12 + 1:02d}-{n % 28 + 1:02d}"
        text = f"---\ntitle: Essay {n}\ndate: {day}\n---\n\n{document(rng, 4)}\n"
        (essays / f"{day}-essay-{n}.md").write_text(text)
    (root / "persona.toml").write_text('name = "Hollis Penwarden"\nsources = ["essays"]\n')
    (root / "transcripts").mkdir()
    for number in range(0, exchanges, 10):
        interview = {
            "participants": {"q": "Jo Park", "a": "Hollis Penwarden"},
            "date": f"2023-{number // 10 % 12 + 1:02d}-15",
            "url": f"https://example.org/interview/{number // 10}",
            "exchanges": [
                [paragraph(rng, 1).rstrip(".!") + "?", paragraph(rng, 3)]
                for _ in range(min(10, exchanges - number))
            ],
        }
        path = root / "transcripts" / f"interview-{number // 10}.json"
        path.write_text(json.dumps(interview))


def llama_server(port: int) -> list[str]:
    """SmolLM2 behind llama.cpp's OpenAI-compatible server on a loopback port."""
    from raft.backends.models import smollm2_gguf

    return [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf())] + [
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2",
        "--model_alias", "smollm2",
    ]  # fmt: skip


def recorded_requests(cache: Path) -> list[dict]:
    """The chat requests ft:gen sent, in the order the server answered them."""
    with sqlite3.connect(cache) as db:
        rows = db.execute(
            "SELECT request FROM calls WHERE kind = 'chat' AND request IS NOT NULL ORDER BY rowid"
        ).fetchall()
    return [json.loads(request) for (request,) in rows]


def answer_times(cache: Path) -> tuple[float, float]:
    """When the first and the last chat answers were stored (Unix seconds, whole seconds)."""
    with sqlite3.connect(cache) as db:
        first, last = db.execute(
            "SELECT MIN(created), MAX(created) FROM calls WHERE kind = 'chat'"
        ).fetchone()
    return tuple(  # type: ignore[return-value]
        dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()
        for stamp in (first, last)
    )


def replay(requests: list[dict], url: str) -> float:
    """Seconds to send the same requests straight to the server, as concurrently as ft:gen."""
    from raft.backends.llm import OpenAILLM

    llm = OpenAILLM("smollm2", url)
    params = [
        {key: r[key] for key in ("temperature", "max_tokens", "seed", "stop") if key in r}
        for r in requests
    ]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=llm.concurrency) as pool:
        list(
            pool.map(
                lambda r, p: llm.complete(r["messages"], schema=r["schema"], **p), requests, params
            )
        )
    return time.perf_counter() - start


def run(quick: bool) -> list[Result]:
    exchanges = 10 if quick else EXCHANGES
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        write_persona(data / "bench", exchanges)
        env = raft_env(data)
        for command in (["fetch"], ["chunk", "--max-tokens", "256"], ["embed"]):
            run_measured([str(BIN / "raft"), command[0], "bench", *command[1:]], env)
        url = f"http://127.0.0.1:{(port := free_port())}/v1"
        with serving(llama_server(port), f"{url}/models"):
            env["RAFT_GENERATOR"] = f"openai:smollm2@{url}"
            gen = [str(BIN / "raft"), "ft:gen", "bench", "-k", str(K)]
            fresh = data / "fresh"
            shutil.copytree(data / "bench", fresh / "bench")  # its cache holds only embeddings
            started = time.time()
            seconds, _ = run_measured(gen, env | {"RAFT_DATA_DIR": str(fresh)})
            requests = recorded_requests(fresh / "bench" / "cache.sqlite")
            first, last = answer_times(fresh / "bench" / "cache.sqlite")
            raw = replay(requests, url)
            start = time.perf_counter()
            again = subprocess.run(
                gen, env=env | {"RAFT_DATA_DIR": str(fresh)}, capture_output=True, text=True
            )
            rerun = time.perf_counter() - start
    calls = re.search(r"(\d+) model calls", again.stdout)
    rerun_calls = int(calls.group(1)) if calls else -1
    ratio = seconds / raw
    return [
        Result(
            "ft:gen",
            f"wall s, {exchanges} exchanges, k={K} ({len(requests)} LLM calls)",
            seconds,
            raw,
            ratio,
            f"<= {GOAL_RATIO}x raw",
            ratio <= GOAL_RATIO,
            "raw: the requests ft:gen recorded in its cache, replayed straight to the same "
            "llama_cpp.server with the same concurrency (8); one run each (a run is minutes). "
            f"raft took {seconds - raw:.0f} s more. Its first answer was stored "
            f"{first - started:.0f} s after the process started (imports, loading MiniLM, the "
            "first recall, and the answer's own time, which the replay pays too), its last "
            f"{started + seconds - last:.0f} s before the process ended (whole-second stamps).",
        ),
        Result(
            "ft:gen re-run",
            f"wall s with a warm cache ({rerun_calls} model calls)",
            rerun,
            None,
            None,
            f"0 calls, < {GOAL_RERUN_SECONDS:.0f} s",
            again.returncode == 0 and rerun_calls == 0 and rerun < GOAL_RERUN_SECONDS,
            "the whole CLI process, imports included",
        ),
    ]
