"""`raft ft:gen` end to end on a tiny persona with the real SmolLM2 and MiniLM."""

from __future__ import annotations

import json
import shutil

import pytest

from raft.conversation import Budget, Exchange, count_message_tokens, render
from raft.files import read_jsonl
from tests.helpers import run_cli
from tests.tiny_persona import ESSAYS, FT_GEN, TARGET, digests, held_out_texts, write_tiny_persona


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
    assert stats["spec"]["prompts"]["judge_question"] and stats["spec"]["k"] == 2


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


def test_rendering_keeps_newest_history_within_budget_whatever_the_answer():
    history = [
        Exchange(f"question {i} " + "word " * 40, f"answer {i} " + "word " * 60) for i in range(7)
    ]
    question, answer = "question 7 " + "word " * 40, "answer 7 " + "word " * 60
    full = render("system", history, question, [], [Budget(100_000, 512)], answer)
    assert full.history == list(range(7)) and full.dropped == 0
    budget = Budget(600, 100)
    packed = render("system", history, question, [], [budget], answer)
    assert packed.history == list(range(7 - len(packed.history), 7))  # newest kept
    assert 0 < len(packed.history) < 7 and packed.dropped == 7 - len(packed.history)
    assert count_message_tokens(packed.messages[:-1]) + budget.reserve <= budget.limit
    assert count_message_tokens(packed.messages) == packed.n_tokens
    assert packed.messages[-1]["content"].startswith("answer 7")
    # The history never depends on the answer: a ten-times longer one changes nothing else.
    longer = render("system", history, question, [], [budget], answer * 10)
    assert longer.messages[:-1] == packed.messages[:-1]
    # Inference is the same rendering minus the answer.
    prompt = render("system", history, question, [], [budget])
    assert prompt.messages == packed.messages[:-1]


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


def test_stats_record_what_the_samples_cost(generated):
    persona, _, first = generated
    stats = json.loads((persona / "finetune" / "stats.json").read_text())
    data, each = stats["cost"]["data"], stats["cost"]["per_sample"]
    calls = (persona / "finetune" / "cache_keys.txt").read_text().split()
    # Every call behind the samples was made by this first run, and its row kept its cost.
    assert (data["calls"], data["calls_unrecorded"]) == (len(calls), 0)
    # Two rephrasings a question, at most one batch per pass, and any memory judged alone.
    assert data["calls"] <= 6 * (2 + 2) + 2 * stats["memories"]["judged_alone"]
    # A question's calls run back to back and open alike: llama.cpp's KV cache served some.
    assert 0 < data["cached"] < data["prompt"] and data["completion"] > 0
    assert data["evaluated"] == data["prompt"] - data["cached"] and data["seconds"] > 0
    assert each["calls"] == round(data["calls"] / 6, 2)
    assert each["evaluated"] == round(data["evaluated"] / 6, 2)
    assert f"cost per sample: {each['calls']:g} model calls" in first.stdout


@pytest.fixture(scope="module")
def oracle(synthetic, tmp_path_factory):
    """The synthetic persona's dataset again with --oracle-p 1: every model call is cached."""
    source, env, args, _ = synthetic
    data = tmp_path_factory.mktemp("oracle") / "data"
    shutil.copytree(source, data / "lena")
    persona, env = data / "lena", {**env, "RAFT_DATA_DIR": str(data)}
    result = run_cli("raft", *args, "--oracle-p", "1", env=env)
    assert result.returncode == 0, result.stderr
    return persona, env, result


def test_oracle_puts_the_sentences_nearest_the_answer_beside_the_recalled_ones(generated, oracle):
    persona, env, result = oracle
    plain = {r["id"]: r for r in read_jsonl(generated[0] / "finetune" / "raft.jsonl")}
    rows = list(read_jsonl(persona / "finetune" / "raft.jsonl"))
    slots = {
        row["id"]: row["messages"][-2]["content"]
        for name in ("messages.jsonl", "messages.valid.jsonl")
        for row in read_jsonl(persona / "finetune" / name)
    }
    real = [r for r in rows if not r["synthetic"]]
    assert len(real) == 6 and len(rows) > 6  # the synthetic samples came along
    oracles = {}
    for row in rows:
        assert row["made"]["spec"]["oracle_p"] == 1.0
        found = [m for m in row["memories"] if m["oracle"]]
        if row["synthetic"]:
            assert not row["oracle"] and not found  # only real exchanges have an answer to read
            continue
        assert row["oracle"] and len(found) == 2
        oracles[row["question"]] = [m["rephrased"] for m in found]
        for memory in found:
            assert memory["chunk_id"] in row["kept"]
            assert f"({memory['date']}) {memory['rephrased']}" in slots[row["id"]]
            essays = [name for name, (_, body) in ESSAYS.items() if memory["rephrased"] in body]
            assert essays and all(name[:10] < row["date"] for name in essays), memory
        # The question's own recall is untouched: the oracle is shown beside it.
        before = plain[row["id"]]
        assert [m for m in row["memories"] if not m["oracle"]] == before["memories"]
        assert [c for c in row["kept"] if "@" not in c] == before["kept"]
    # An earlier exchange's slot shows what its question alone recalled, as at inference.
    history = [m["content"] for r in real for m in r["messages"][:-2] if m["role"] == "user"]
    assert history and not any(o in turn for os in oracles.values() for o in os for turn in history)
    assert oracles["How did you start keeping bees on a roof?"] == [
        "Bees taught me that a city is a meadow if you count the window boxes.",
        "I keep two hives on the roof of the laundrette on Mill Street.",
    ]
    stats = json.loads((persona / "finetune" / "stats.json").read_text())
    assert stats["oracle_samples"] == 6 and stats["spec"]["oracle_p"] == 1.0
    assert "; 6 samples with the oracle" in result.stdout
    assert "; 0 model calls" in result.stdout  # the answers' embeddings come from the cache
    bad = run_cli("raft", "ft:gen", "lena", "--no-memories", "--oracle-p", "0.5", env=env)
    assert bad.returncode == 2 and "--oracle-p needs memories" in bad.stderr


PARAGRAPH = (
    "The hardest part is the swarm season in May, when the old queen leaves with half the "
    "colony and you chase them down the high street."
)


def test_paragraph_unit_recalls_the_authors_earlier_paragraphs_whole(generated, tmp_path):
    """--unit paragraph: memories are whole paragraphs of essays dated before the interview.
    Through Recall.retrieve on the real store and MiniLM: the ft:gen run's judges cost ~1 min
    of SmolLM2 on 2 cores, over this file's budget; the CLI checks its flag."""
    from raft.conversation import ConversationSpec
    from raft.memories import Recall
    from raft.paths import Persona
    from raft.workspace import Workspace

    source, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(source, data / "lena")  # the query embeddings land in the copy's cache
    os_env = {**env, "RAFT_DATA_DIR": str(data)}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in os_env.items():
            patch.setenv(name, value)
        ws = Workspace.open(Persona("lena", data / "lena"))
        spec = ConversationSpec(TARGET, k=2, unit="paragraph")
        memories = Recall(ws.store, None, spec).retrieve(
            "What is the worst month for a beekeeper?", "2021-06-01"
        )
    best = memories[0]
    offset = int(best.chunk_id.rsplit("@", 1)[1])
    assert (best.date, best.rephrased, best.kind) == ("2020-03-01", PARAGRAPH, "chunk")
    assert best.text[offset : offset + len(PARAGRAPH)] == PARAGRAPH
    assert best.distance == min(m.distance for m in memories)
    paragraphs = {p: name for name, (_, body) in ESSAYS.items() for p in body.split("\n\n")}
    assert len(memories) == 2 and len({m.rephrased for m in memories}) == 2
    assert all(paragraphs[m.rephrased][:10] < "2021-06-01" for m in memories)
    # A spec written before the field retrieved chunks; the flag refuses other units.
    assert ConversationSpec.from_row({"target": TARGET}).unit == "chunk"
    assert spec.to_row()["unit"] == "paragraph"
    bad = run_cli("raft", *FT_GEN, "--unit", "sentence", env=os_env)
    assert bad.returncode == 2 and "'--unit'" in bad.stderr and "sentence" in bad.stderr
    plain = run_cli("raft", "ft:gen", "lena", "--no-memories", "--unit", "paragraph", env=os_env)
    assert plain.returncode == 2 and "--unit needs memories" in plain.stderr
