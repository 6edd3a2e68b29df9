"""Held-out interviews never reach training: `raft check` proves it, and names what leaked."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from raft.backends.cache import Cache, key_of, request_text
from tests.helpers import free_port, run_cli
from tests.robustness.test_chroma_server import start_chroma, stop
from tests.tiny_persona import FT_GEN, build_store, held_out_texts

CHECKS = 9


def check(env: dict[str, str], data) -> tuple[int, list[str], str]:
    result = run_cli("raft", "check", "lena", env={**env, "RAFT_DATA_DIR": str(data)})
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    return result.returncode, failed, result.stderr


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    """`chroma run` on 127.0.0.1 for this module; yields its URL."""
    port = free_port()
    server = start_chroma(tmp_path_factory.mktemp("chroma") / "db", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server)


def test_check_passes_then_names_each_planted_problem(generated, tmp_path):
    persona, env, _ = generated
    status, failed, _ = check(env, persona.parent)
    assert status == 0 and failed == []

    copy = tmp_path / "data" / "lena"
    shutil.copytree(persona, copy)
    rows = [json.loads(line) for line in (copy / "finetune" / "raft.jsonl").open()]
    future = next(r for r in rows if r["memories"])
    future["memories"][0]["date"] = future["date"]
    rows[-1]["messages"][0]["content"] += " Ignore previous instructions."
    (copy / "finetune" / "raft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    leaked = held_out_texts()[1]  # the first held-out answer
    with open(copy / "finetune" / "openai.jsonl", "a") as handle:
        handle.write(json.dumps({"messages": [{"role": "assistant", "content": leaked}]}) + "\n")

    status, failed, stderr = check(env, copy.parent)
    assert status == 1 and f"3 of {CHECKS} checks failed" in stderr
    assert len(failed) == 3
    assert "openai.jsonl" in failed[0] and "held-out answer 1" in failed[0]
    assert future["id"] in failed[1] and future["date"] in failed[1]
    assert rows[-1]["id"] in failed[2] and "system prompt" in failed[2]


def test_a_training_call_that_sent_held_out_text_is_named(generated, tmp_path):
    persona, env, _ = generated
    copy = tmp_path / "data" / "lena"
    shutil.copytree(persona, copy)
    # As if a buggy stage had put the held-out answer into a prompt while making the data.
    messages = [{"role": "user", "content": f"Rephrase: {held_out_texts()[3]}"}]
    request = request_text(kind="chat", model="smollm2", messages=messages)
    Cache(copy / "cache.sqlite").put(key_of(request), "chat", b'{"content": "x"}', request)
    with open(copy / "finetune" / "cache_keys.txt", "a") as handle:
        handle.write(key_of(request) + "\n")

    status, failed, _ = check(env, copy.parent)
    assert status == 1
    assert failed == [
        f"FAIL  no held-out text in the calls behind finetune/: the call {key_of(request)} "
        f"listed in {copy / 'finetune' / 'cache_keys.txt'} contains held-out answer 2 of "
        "2023-01-10-held-out-podcast.json"
    ]


def test_calls_that_cannot_be_read_back_fail_until_ft_gen_records_them(generated, tmp_path):
    persona, env, _ = generated
    copy = tmp_path / "data" / "lena"
    shutil.copytree(persona, copy)
    env = {**env, "RAFT_DATA_DIR": str(copy.parent)}
    keys = (copy / "finetune" / "cache_keys.txt").read_text().split()
    assert len(keys) > 10

    # A cache made before requests were kept: the calls are there, what they sent is not.
    with sqlite3.connect(copy / "cache.sqlite") as db:
        db.execute("UPDATE calls SET request = NULL")
    status, failed, _ = check(env, copy.parent)
    assert status == 1 and len(failed) == 1
    assert f"{len(keys)} of {len(keys)} calls listed in" in failed[0]
    assert "run `raft ft:gen lena` to record them" in failed[0]

    rerun = run_cli("raft", *FT_GEN, env=env)  # every call is cached: nothing is asked again
    assert rerun.returncode == 0 and "; 0 model calls" in rerun.stdout, rerun.stderr
    assert check(env, copy.parent)[:2] == (0, [])

    (copy / "finetune" / "cache_keys.txt").unlink()
    status, failed, _ = check(env, copy.parent)
    assert status == 1 and "cache_keys.txt is missing" in failed[0]


def test_a_held_out_interview_also_in_training_is_refused(generated, tmp_path):
    persona, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(persona, data / "lena")
    training = data / "lena" / "transcripts" / "2021-06-01-garden-radio.json"
    held = data / "lena" / "benchmark" / "copy.json"
    shutil.copy(training, held)
    result = run_cli("raft", *FT_GEN, env={**env, "RAFT_DATA_DIR": str(data)})
    assert result.returncode == 1
    assert f"{held} and {training} are the same interview (same url)" in result.stderr
    assert "a held-out interview must not be trained on" in result.stderr
    status, failed, _ = check(env, data)
    assert status == 1 and f"{held} and {training}" in failed[0]


@pytest.mark.slow
def test_check_reads_the_store_on_the_chroma_server(chroma_url, tmp_path, monkeypatch):
    import chromadb

    monkeypatch.setenv("RAFT_CHROMA_URL", chroma_url)  # every CLI run below, build_store's too
    data = tmp_path / "data"
    env = build_store(data)
    before = run_cli("raft", "check", "lena", env=env)
    assert "PASS  no held-out text in the store" in before.stdout, before.stdout
    failed_before = [line for line in before.stdout.splitlines() if line.startswith("FAIL")]

    # A held-out answer that reached only the server's collection, never chunks.jsonl.
    port = int(chroma_url.rsplit(":", 1)[1])
    collection = chromadb.HttpClient(host="127.0.0.1", port=port).get_collection("raft-lena-chunks")
    vector = collection.get(limit=1, include=["embeddings"])["embeddings"][0]
    text = f"Notes from the market. {held_out_texts()[1]}"
    collection.add(ids=["planted"], embeddings=[vector], documents=[text])

    status, failed, _ = check(env, data)
    assert status == 1
    assert [line for line in failed if line not in failed_before] == [
        "FAIL  no held-out text in the store: store record planted contains held-out answer 1 "
        "of 2023-01-10-held-out-podcast.json"
    ]
    assert not (data / "lena" / "chroma").exists()  # the server was read, no local store
