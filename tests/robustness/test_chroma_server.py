"""The Chroma server dies mid-embed: `raft embed` stops with one line naming the server, and
after a restart it resumes, keeping what the server had already stored.

Real CLI, real MiniLM, a real `chroma run` on 127.0.0.1, killed with SIGKILL: a crash (the
OOM killer, a lost container) gives no goodbye, which is the harder case for both sides: the
client sees a connection reset or refused mid-request, and the server must keep every write it
acknowledged without a clean shutdown.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, free_port, run_cli, wait_for_http

pytestmark = pytest.mark.slow

NAME = "crashy"
DOCUMENTS = 20
PARAGRAPHS = 50  # one chunk each at --max-tokens 16: 1000 chunks, seconds of MiniLM
SUMMARY = re.compile(
    rf"embed {NAME}: (\d+) added, (\d+) updated, (\d+) removed, (\d+) unchanged \((\d+) embedded\)"
)
WORDS = ["honey", "bread", "river", "heron", "hive", "garden", "market", "flour", "winter"]
WORDS += ["summer", "colony", "roof", "street", "lock", "canal", "swarm", "queen", "frame", "oven"]


def start_chroma(path: Path, port: int) -> subprocess.Popen:
    """`chroma run` storing in `path` on 127.0.0.1:`port`; returns once it answers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / "chroma.log", "a") as log:
        process = subprocess.Popen(
            [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1"]
            + ["--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", process, timeout=60)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
    process.wait(timeout=30)


@pytest.fixture
def chunked(data_dir: Path, tmp_path: Path) -> list[dict]:
    """A persona NAME fetched from local essays and chunked small; returns its chunks."""
    rng = random.Random(7)
    essays = tmp_path / "essays"
    essays.mkdir()
    for number in range(DOCUMENTS):
        paragraphs = [
            f"Note {number}.{part}: " + " ".join(rng.choice(WORDS) for _ in range(8)) + "."
            for part in range(PARAGRAPHS)
        ]
        text = f"# Essay {number}\n\n" + "\n\n".join(paragraphs) + "\n"
        (essays / f"2021-01-{number + 1:02d}-essay.md").write_text(text)
    fetch = run_cli("raft", "fetch", NAME, "--from", str(essays))
    assert fetch.returncode == 0, fetch.stderr
    chunk = run_cli("raft", "chunk", NAME, "--max-tokens", "16", "--overlap", "0")
    assert chunk.returncode == 0, chunk.stderr
    lines = (data_dir / NAME / "chunks.jsonl").read_text().splitlines()
    chunks = [json.loads(line) for line in lines]
    assert len(chunks) >= DOCUMENTS * PARAGRAPHS
    return chunks


def chroma_client(port: int):
    import chromadb

    return chromadb.HttpClient(host="127.0.0.1", port=port)


def collection_count(client) -> int:
    """Records in the persona's collection on the server; 0 before it exists."""
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(f"raft-{NAME}-chunks").count()
    except NotFoundError:
        return 0


def assert_one_clear_error(result: subprocess.CompletedProcess, url: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"raft: error: cannot reach the Chroma server at {url}")
    assert f"embed {NAME}:" not in result.stdout  # no summary of work that did not finish


def test_server_killed_mid_embed_fails_clearly_and_embed_resumes(
    chunked: list[dict], tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "chroma" / "db"
    env = {"RAFT_CHROMA_URL": url}
    server = start_chroma(db, port)
    try:
        embed = subprocess.Popen(
            [str(BIN / "raft"), "embed", NAME],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        client = chroma_client(port)
        deadline = time.monotonic() + 120
        while (stored := collection_count(client)) == 0:  # until the first batch is in
            assert embed.poll() is None, embed.communicate()
            assert time.monotonic() < deadline, "no batch reached the server"
            time.sleep(0.02)
        stop(server, signal.SIGKILL)
        out, err = embed.communicate(timeout=120)
    finally:
        stop(server)
        if embed.poll() is None:
            embed.kill()
    assert 0 < stored < len(chunked), "embed finished before the server died: use more chunks"
    assert_one_clear_error(subprocess.CompletedProcess(embed.args, embed.returncode, out, err), url)

    server = start_chroma(db, port)
    try:
        result = run_cli("raft", "embed", NAME, env=env)
        assert result.returncode == 0, result.stderr
        summary = SUMMARY.search(result.stdout)
        assert summary, result.stdout
        added, updated, removed, unchanged, embedded = map(int, summary.groups())
        # Every record the server acknowledged before the crash is kept, only the rest is sent.
        assert unchanged >= stored and added > 0
        assert added + unchanged == len(chunked) and updated == removed == 0
        assert embedded == added

        collection = chroma_client(port).get_collection(f"raft-{NAME}-chunks")
        records = collection.get(include=["metadatas"])
        metadatas = records["metadatas"]
        hashes = {id_: meta["hash"] for id_, meta in zip(records["ids"], metadatas, strict=True)}
        assert hashes == {chunk["id"]: chunk["hash"] for chunk in chunked}
    finally:
        stop(server)


def test_embed_with_no_server_fails_clearly(data_dir: Path) -> None:
    persona = data_dir / NAME
    persona.mkdir()
    chunk = {"id": "a:0", "doc_id": "a", "part": 0, "total_parts": 1, "text": "Bees.", "hash": "h"}
    (persona / "chunks.jsonl").write_text(json.dumps(chunk) + "\n")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = run_cli("raft", "embed", NAME, env={"RAFT_CHROMA_URL": url})
    assert result.returncode == 1
    assert_one_clear_error(result, url)
