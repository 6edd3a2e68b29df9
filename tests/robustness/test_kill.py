"""`kill -9` in the middle of a stage costs nothing: re-running it completes, and what it
writes is identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request

from tests.helpers import BIN, run_cli
from tests.sites import FakeSubstack, paragraphs
from tests.tiny_persona import FT_GEN, build_store, digests


def kill_when(command: list[str], env: dict[str, str], ready: Callable[[], bool]) -> None:
    """Start a CLI command, SIGKILL it as soon as `ready()` holds; fail if it ends first."""
    process = subprocess.Popen(
        [str(BIN / command[0]), *command[1:]],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not ready():
        time.sleep(0.02)
    assert process.poll() is None, f"{command} ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()


def cached(persona: Path, kind: str) -> int:
    """Calls of `kind` in the persona's cache so far (read while another process writes)."""
    if not (persona / "cache.sqlite").exists():
        return 0
    with sqlite3.connect(persona / "cache.sqlite", timeout=30) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM calls WHERE kind = ?", (kind,)).fetchone()[0]
        except sqlite3.OperationalError as error:
            # The writer creates the file a moment before its table.
            if "no such table" in str(error):
                return 0
            raise


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def slow_substack(httpserver: HTTPServer) -> FakeSubstack:
    """A Substack of 40 posts whose pages take 50 ms each, like a real server far away."""
    site = FakeSubstack(httpserver.url_for("").rstrip("/"))
    site.posts = [
        (
            f"post-{n}",
            f"Post {n}",
            f"2021-01-{n % 28 + 1:02d}T08:00:00Z",
            "everyone",
            paragraphs(f"Topic {n}"),
        )
        for n in range(40)
    ]

    site.requested = []

    def slow(request: Request):
        time.sleep(0.05)  # the server's latency, not a pause in the code under test
        site.requested.append(site.base + request.path)
        return site(request)

    httpserver.expect_request("/api/v1/archive").respond_with_handler(site)
    httpserver.expect_request(re.compile(r"^/p/")).respond_with_handler(slow)
    return site


def test_killed_fetch_resumes_to_the_same_corpus(tmp_path, slow_substack):
    fetch = ["raft", "fetch", "author", "--from", slow_substack.base]
    whole = tmp_path / "whole"
    assert run_cli(*fetch, env={"RAFT_DATA_DIR": str(whole)}).returncode == 0
    assert slow_substack.page_requests == 40

    cut, env = tmp_path / "cut", {"RAFT_DATA_DIR": str(tmp_path / "cut")}
    corpus = cut / "author" / "corpus.jsonl"
    kill_when(fetch, env, lambda: lines(corpus) >= 5)
    fetched = {json.loads(line)["link"] for line in corpus.read_text().splitlines()[:-1]}
    slow_substack.requested.clear()
    result = run_cli(*fetch, env=env)
    assert result.returncode == 0, result.stderr
    # No post already in the corpus was requested again.
    assert len(fetched) >= 4 and not fetched & set(slow_substack.requested)
    # Documents are appended as they arrive, so only the order of lines may differ.
    done = sorted(corpus.read_text().splitlines())
    assert done == sorted((whole / "author" / "corpus.jsonl").read_text().splitlines())
    assert run_cli("raft", "chunk", "author", env=env).returncode == 0


def collection(persona: Path) -> dict:
    """Everything the persona's Chroma collection holds, by id."""
    import chromadb

    client = chromadb.PersistentClient(path=str(persona / "chroma"))
    stored = client.get_collection(f"raft-{persona.name}-chunks", embedding_function=None).get(
        include=["documents", "metadatas", "embeddings"]
    )
    return {
        record_id: (document, metadata, [round(float(x), 6) for x in vector])
        for record_id, document, metadata, vector in zip(
            stored["ids"],
            stored["documents"],
            stored["metadatas"],
            stored["embeddings"],
            strict=True,
        )
    }


def test_killed_embed_resumes_to_the_same_store(tmp_path):
    essays = tmp_path / "essays"
    essays.mkdir()
    for n in range(12):
        text = "\n\n".join(paragraphs(f"Subject {n}", 30))
        (essays / f"2020-01-{n + 1:02d}-essay.md").write_text(f"# Essay {n}\n\n{text}\n")

    def chunked(name: str) -> tuple[Path, dict[str, str]]:
        env = {"RAFT_DATA_DIR": str(tmp_path / name)}
        assert run_cli("raft", "fetch", "author", "--from", str(essays), env=env).returncode == 0
        chunk = ["chunk", "author", "--max-tokens", "48", "--overlap", "0"]
        assert run_cli("raft", *chunk, env=env).returncode == 0
        return tmp_path / name / "author", env

    whole, env = chunked("whole")
    assert run_cli("raft", "embed", "author", env=env).returncode == 0

    cut, env = chunked("cut")
    chunks = lines(cut / "chunks.jsonl")
    assert chunks > 200
    kill_when(["raft", "embed", "author"], env, lambda: cached(cut, "embed") >= 64)
    assert cached(cut, "embed") < chunks
    result = run_cli("raft", "embed", "author", env=env)
    assert result.returncode == 0, result.stderr
    resumed = collection(cut)
    assert len(resumed) == chunks
    assert resumed == collection(whole)


def test_killed_ft_gen_resumes_to_the_same_files(generated, tmp_path):
    persona, _, _ = generated
    env = build_store(tmp_path / "data")
    resumed = tmp_path / "data" / "lena"
    kill_when(["raft", *FT_GEN], env, lambda: cached(resumed, "chat") >= 6)
    assert not (resumed / "finetune" / "raft.jsonl").exists()

    result = run_cli("raft", *FT_GEN, env=env)
    assert result.returncode == 0, result.stderr
    files, whole = digests(resumed / "finetune"), digests(persona / "finetune")
    files.pop("stats.json"), whole.pop("stats.json")  # compared below, but for its cost
    assert files == whole
    stats, uncut = (
        json.loads((p / "finetune" / "stats.json").read_text()) for p in (resumed, persona)
    )
    cost, cost_uncut = stats.pop("cost")["data"], uncut.pop("cost")["data"]
    assert stats == uncut
    # The same calls, each made once; what llama.cpp's KV cache held before each call, and
    # each call's time, depend on the run (the restart began with an empty one).
    for key in ("calls", "prompt", "completion", "calls_unrecorded"):
        assert cost[key] == cost_uncut[key], key


def test_killed_ratf_run_resumes_to_the_same_replies(benched, tmp_path):
    source, env = benched
    run = ["ratf", "run", "lena", "--max-tokens", "64"]

    def replies(name: str, interrupt: bool) -> str:
        persona = tmp_path / name / "lena"
        shutil.copytree(source, persona)
        env_here = {**env, "RAFT_DATA_DIR": str(persona.parent)}
        if interrupt:
            start = cached(persona, "chat")
            kill_when(run, env_here, lambda: cached(persona, "chat") > start)
            assert not (persona / "ratf" / "runs").exists()  # no half-made run to mistake
        result = run_cli(*run, env=env_here)
        assert result.returncode == 0, result.stderr
        [folder] = (persona / "ratf" / "runs").iterdir()
        assert lines(folder / "replies.jsonl") == 4  # base and base+mem, two items each
        return sha256(folder / "replies.jsonl")

    assert replies("cut", interrupt=True) == replies("whole", interrupt=False)
