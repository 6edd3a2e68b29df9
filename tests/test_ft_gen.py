"""`raft ft:gen` end to end on a tiny persona with the real SmolLM2 and MiniLM."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from raft.dataset import count_message_tokens, pack_sample
from raft.files import read_jsonl
from tests.helpers import BIN, run_cli
from tests.tiny_persona import TARGET, build_store, held_out_texts, write_tiny_persona

FT_GEN = ["ft:gen", "lena", "-k", "2"]
FILES = [
    "raft.jsonl",
    "openai.jsonl",
    "openai.valid.jsonl",
    "messages.jsonl",
    "messages.valid.jsonl",
    "sharegpt.json",
    "stats.json",
]


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    data = tmp_path_factory.mktemp("ftgen") / "data"
    env = build_store(data)
    result = run_cli("raft", *FT_GEN, env=env)
    assert result.returncode == 0, result.stderr
    return data / "lena", env, result


def test_memories_come_only_from_earlier_writing(generated):
    persona, _, _ = generated
    rows = list(read_jsonl(persona / "finetune" / "raft.jsonl"))
    assert len(rows) == 6
    retrieved = [(row["date"], m) for row in rows for m in row["memories"]]
    assert retrieved, "retrieval found nothing"
    for interview_date, memory in retrieved:
        assert memory["date"] < interview_date, (interview_date, memory)
    # The 2022 interview may recall the 2021 interview, never the other way round.
    kinds = {(row["date"], m["kind"]) for row in rows for m in row["memories"]}
    assert ("2021-06-01", "interview") not in kinds
    for row in rows:
        for m in row["memories"]:
            assert m["rephrased"] or m["error"]
            assert isinstance(m["useful"], bool)
            assert m["consistent"] is None or m["useful"]  # pass 2 only after pass 1
        kept = {m["chunk_id"] for m in row["memories"] if m["useful"] and m["consistent"]}
        assert set(row["kept"]) == kept  # no distractors by default


def test_kept_memories_sit_between_question_and_answer(generated):
    persona, _, _ = generated
    rows = list(read_jsonl(persona / "finetune" / "raft.jsonl"))
    for row in rows:
        messages = row["messages"]
        assert messages[0]["role"] == "system" and TARGET in messages[0]["content"]
        assert (
            row["interviewer"] in messages[0]["content"] and row["date"] in messages[0]["content"]
        )
        question, answer = messages[-2], messages[-1]
        assert question["role"] == "user" and question["content"].startswith(row["question"])
        assert answer == {"role": "assistant", "content": row["answer"]}
        by_id = {m["chunk_id"]: m for m in row["memories"]}
        for chunk_id in row["kept"]:
            memory = by_id[chunk_id]
            assert f"({memory['date']}) {memory['rephrased']}" in question["content"]
        assert ("[Memories" in question["content"]) == bool(row["kept"])
        assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * (
            len(row["history"]) + 1
        )


def test_history_turns_are_not_training_targets(generated):
    persona, _, _ = generated
    samples = [
        json.loads(line)
        for name in ("openai.jsonl", "openai.valid.jsonl")
        for line in (persona / "finetune" / name).read_text().splitlines()
    ]
    assert len(samples) == 6
    for sample in samples:
        weights = [m["weight"] for m in sample["messages"] if m["role"] == "assistant"]
        assert weights[-1] == 1 and all(w == 0 for w in weights[:-1])
    assert any(len(s["messages"]) > 3 for s in samples)  # some carry earlier conversation
    trl = [
        json.loads(line)
        for name in ("messages.jsonl", "messages.valid.jsonl")
        for line in (persona / "finetune" / name).read_text().splitlines()
    ]
    sharegpt = json.loads((persona / "finetune" / "sharegpt.json").read_text())
    assert len(trl) == len(sharegpt) == 6
    assert sharegpt[0]["conversations"][0]["from"] == "system"
    stats = json.loads((persona / "finetune" / "stats.json").read_text())
    assert stats["samples"] == 6 and stats["real_samples"] == 6
    assert stats["split"]["train"] + stats["split"]["valid"] == 6
    assert stats["made"]["prompts"]["judge_question"]


def test_no_held_out_text_anywhere(generated):
    persona, _, _ = generated
    import chromadb

    client = chromadb.PersistentClient(path=str(persona / "chroma"))
    stored = client.get_collection("raft-lena-chunks", embedding_function=None).get()
    blobs = [p.read_text() for p in (persona / "finetune").iterdir()] + stored["documents"]
    for text in held_out_texts():
        assert not any(text in blob for blob in blobs)
    # Earlier training interviews are in the store, dated with their interview.
    interviews = [m for m in stored["metadatas"] if m["kind"] == "interview"]
    assert len(interviews) == 6 and {m["date"] for m in interviews} == {"2021-06-01", "2022-06-15"}


def test_rerun_makes_no_model_call_and_same_files(generated):
    persona, env, first = generated
    before = digests(persona / "finetune")
    result = run_cli("raft", *FT_GEN, env=env)
    assert result.returncode == 0, result.stderr
    assert "; 0 model calls" in result.stdout
    assert "model calls" in first.stdout and "; 0 model calls" not in first.stdout
    assert digests(persona / "finetune") == before


def test_oai_rebuilds_formats_from_the_generic_file(generated):
    persona, env, _ = generated
    before = digests(persona / "finetune")
    (persona / "finetune" / "openai.jsonl").unlink()
    result = run_cli("raft", "ft:gen", "lena", "--oai", env=env)
    assert result.returncode == 0, result.stderr
    assert digests(persona / "finetune") == before


def test_killed_run_resumes_to_the_same_files(generated, tmp_path):
    persona, _, _ = generated
    env = build_store(tmp_path / "data")
    cache = tmp_path / "data" / "lena" / "cache.sqlite"
    process = subprocess.Popen(
        [str(BIN / "raft"), *FT_GEN],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if cache.exists():
            with sqlite3.connect(cache) as db:
                if db.execute("SELECT COUNT(*) FROM calls WHERE kind='chat'").fetchone()[0] >= 6:
                    break
        time.sleep(0.2)
    assert process.poll() is None, "ft:gen finished before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "data" / "lena" / "finetune" / "raft.jsonl").exists()

    result = run_cli("raft", *FT_GEN, env=env)
    assert result.returncode == 0, result.stderr
    assert digests(tmp_path / "data" / "lena" / "finetune") == digests(persona / "finetune")


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not valid JSON (line 1"),
        (
            '{"participants": {"q": "A"}, "date": "2021-01-01", "exchanges": [["q", "a"]]}',
            'missing "participants"',
        ),
        (
            '{"participants": {"q": "A", "a": "B"}, "date": "1st May", "exchanges": [["q", "a"]]}',
            "bad date '1st May'",
        ),
        (
            '{"participants": {"q": "A", "a": "B"}, "date": "2021-01-01", "exchanges": [["q"]]}',
            "exchange 1 is not a [question, answer] pair",
        ),
        (
            '{"participants": {"q": "A", "a": "B"}, "date": "2021-01-01", '
            '"exchanges": [["q", " "]]}',
            "exchange 1 has an empty question or answer",
        ),
    ],
)
def test_malformed_transcript_fails_clearly_and_keeps_outputs(
    generated, tmp_path, content, message
):
    persona, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(persona, data / "lena")
    bad = data / "lena" / "transcripts" / "2023-02-02-broken.json"
    bad.write_text(content)
    before = digests(data / "lena" / "finetune")
    result = run_cli("raft", *FT_GEN, env={**env, "RAFT_DATA_DIR": str(data)})
    assert result.returncode == 1
    assert message in result.stderr
    assert str(bad) in result.stderr
    assert digests(data / "lena" / "finetune") == before


def test_held_out_interview_also_in_training_is_refused(generated, tmp_path):
    persona, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(persona, data / "lena")
    shutil.copy(
        data / "lena" / "transcripts" / "2021-06-01-garden-radio.json",
        data / "lena" / "benchmark" / "copy.json",
    )
    result = run_cli("raft", *FT_GEN, env={**env, "RAFT_DATA_DIR": str(data)})
    assert result.returncode == 1 and "same interview (same url)" in result.stderr


def test_ft_gen_before_embed_says_what_to_run(tmp_path):
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    result = run_cli("raft", *FT_GEN, env={"RAFT_DATA_DIR": str(data)})
    assert result.returncode == 1
    assert "raft embed lena" in result.stderr


def test_packing_keeps_newest_history_within_budget():
    turns = [(f"question {i} " + "word " * 40, f"answer {i} " + "word " * 60) for i in range(8)]
    full = pack_sample("system", turns, 7, max_tokens=100_000)
    assert full.history == list(range(7)) and full.dropped == 0
    budget = 600
    packed = pack_sample("system", turns, 7, max_tokens=budget)
    assert packed.history == list(range(7 - len(packed.history), 7))  # newest kept
    assert 0 < len(packed.history) < 7 and packed.dropped == 7 - len(packed.history)
    assert count_message_tokens(packed.messages) == packed.n_tokens <= budget
    assert packed.messages[-1]["content"].startswith("answer 7")


def test_transcript_add_imports_plain_text(tmp_path):
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    text = tmp_path / "chat.txt"
    text.write_text(
        "Jo Park: Welcome. Why bees?\n\nLena Marsh: Because of the window boxes.\n\n"
        "They feed a whole street.\n\nJo Park: And bread?\n\nLena Marsh: Gerald, always.\n"
    )
    env = {"RAFT_DATA_DIR": str(data)}
    args = ["transcript:add", "lena", str(text), "--interviewer", "Jo Park", "--date", "2023-03-03"]
    result = run_cli("raft", *args, env=env)
    assert result.returncode == 0, result.stderr
    saved = json.loads((data / "lena" / "transcripts" / "2023-03-03-chat.json").read_text())
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert saved["exchanges"] == [
        ["Welcome. Why bees?", "Because of the window boxes.\n\nThey feed a whole street."],
        ["And bread?", "Gerald, always."],
    ]
    again = run_cli("raft", *args, env=env)
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize(
    "reply,cleaned",
    [
        ('Sure, here is the memory: "I glued it. I glued it. It held."', "I glued it. It held."),
        ("One. Two! Three? Four.", "One. Two!"),
        ("  plain   text  ", "plain text"),
    ],
)
def test_rephrasings_are_cleaned_of_preamble_and_repetition(reply, cleaned):
    from raft.memories import clean_rephrasing

    assert clean_rephrasing(reply) == cleaned


def test_cheap_filters_reject_boilerplate_links_and_fragments():
    from raft.synthetic import SyntheticSettings, rejection

    settings = SyntheticSettings()
    view = " ".join(["A colony is a promise you renew each spring, not a thing you own."] * 4)
    assert rejection(view, settings) is None
    assert rejection("Too short to stand alone.", settings) == "too short"
    links = "\n".join(f"- [Reading {i}](https://x.example.org/{i}) on bees" for i in range(8))
    assert rejection(links, settings) == "mostly links"
    banner = view + " Thanks for reading Hive Notes! Subscribe for free to receive new posts."
    assert rejection(banner, settings) == "boilerplate"


@pytest.fixture(scope="module")
def synthetic(generated, tmp_path_factory):
    source, env, _ = generated
    data = tmp_path_factory.mktemp("synthetic") / "data"
    shutil.copytree(source, data / "lena")  # with its cache: the real exchanges cost nothing
    persona, env = data / "lena", {**env, "RAFT_DATA_DIR": str(data)}
    args = [*FT_GEN, "--synthetic", "4", "--lenses", "neutral,skeptic"]
    result = run_cli("raft", *args, env=env)
    assert result.returncode == 0, result.stderr
    return persona, env, args, result


def test_synthetic_answers_are_the_authors_own_passages(synthetic):
    persona, _, _, result = synthetic
    rows = list(read_jsonl(persona / "finetune" / "raft.jsonl"))
    chunks = {c["id"]: c for c in read_jsonl(persona / "chunks.jsonl")}
    corpus = [d["content"] for d in read_jsonl(persona / "corpus.jsonl")]
    made = [r for r in rows if r["synthetic"]]
    assert made, result.stdout
    for row in made:
        source = chunks[row["source_chunk"]]
        assert row["answer"] == source["text"].strip()
        assert any(" ".join(row["answer"].split()) in " ".join(doc.split()) for doc in corpus)
        assert row["lens"] in ("neutral", "skeptic") and row["question"].strip()
        assert "subscribe" not in row["answer"].lower()  # boilerplate never becomes an answer
        assert all(m["doc_id"] != source["doc_id"] for m in row["memories"])
        assert all(m["date"] < source["date"] for m in row["memories"])
        assert row["messages"][-1]["content"] == row["answer"]
    stats = json.loads((persona / "finetune" / "stats.json").read_text())
    assert stats["real_samples"] == 6 and stats["synthetic_samples"] == len(made)
    assert stats["interviews"] == 2  # synthetic samples are not interviews
    assert stats["synthetic_samples"] <= stats["real_samples"]  # the default ratio is 0.5


def test_synthetic_share_is_capped_and_reruns_are_free(synthetic):
    persona, env, args, _ = synthetic
    again = run_cli("raft", *args, env=env)
    assert again.returncode == 0 and "; 0 model calls" in again.stdout
    capped = run_cli("raft", *args, "--synthetic-ratio", "0.2", env=env)
    assert capped.returncode == 0, capped.stderr
    stats = json.loads((persona / "finetune" / "stats.json").read_text())
    assert stats["synthetic_samples"] <= 1  # 0.2 of the training set beside 6 real samples
    assert stats["synthetic_samples"] / stats["samples"] <= 0.2


@pytest.mark.parametrize(
    "reply,question",
    [
        ('Lena Marsh, interviewer, asked: "Why seven herons? And then', "Why seven herons?"),
        ("Question: Why do bees swarm in May?\nAnswer: because", "Why do bees swarm in May?"),
        ("What is asked of a keeper: patience?", "What is asked of a keeper: patience?"),
    ],
)
def test_generated_questions_are_cleaned(reply, question):
    from raft.synthetic import clean_question

    assert clean_question(reply) == question


def test_check_passes_then_names_each_planted_problem(generated, tmp_path):
    persona, env, _ = generated
    clean = run_cli("raft", "check", "lena", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.count("PASS") == 7 and "FAIL" not in clean.stdout

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

    result = run_cli("raft", "check", "lena", env={**env, "RAFT_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 1 and "3 of 7 checks failed" in result.stderr
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 3
    assert "openai.jsonl" in failed[0] and "held-out answer 1" in failed[0]
    assert future["id"] in failed[1] and future["date"] in failed[1]
    assert rows[-1]["id"] in failed[2] and "system prompt" in failed[2]
