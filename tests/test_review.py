"""Review marks (raft.review): samples and memories dropped in review.json, which `raft ft:gen`
honours when it writes the format files, never rewriting raft.jsonl."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from raft.errors import UsageError
from raft.files import read_jsonl
from raft.review import Review, load_review, mark
from tests.helpers import REPO, run_cli
from tests.tiny_persona import FT_GEN

FORMATS = [
    "openai.jsonl",
    "openai.valid.jsonl",
    "messages.jsonl",
    "messages.valid.jsonl",
    "sharegpt.json",
]


@pytest.fixture
def lena(generated, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the generated tiny persona: its finetune/ folder and the env to reach it."""
    source, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(source, data / "lena")
    return data / "lena" / "finetune", {**env, "RAFT_DATA_DIR": str(data)}


def _bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in [*FORMATS, "raft.jsonl"]}


def _written(folder: Path) -> dict[str, list[dict]]:
    """Messages by sample id, from the TRL files."""
    rows = [row for name in FORMATS[2:4] for row in read_jsonl(folder / name)]
    return {row["id"]: row["messages"] for row in rows}


def _marks(rows: list[dict]) -> tuple[dict, dict, dict]:
    """A sample with a kept memory whose rephrasing shows nowhere else, that memory, and an
    earlier sample of the same interview to drop (so it is history in the first)."""
    everywhere = [m["rephrased"] for row in rows for m in row["memories"]]
    for row in rows:
        earlier = [r for r in rows if r["interview"] == row["interview"] and r["index"] == 0]
        for memory in row["memories"]:
            unique = sum(memory["rephrased"] in text for text in everywhere) == 1
            if row["index"] and memory["chunk_id"] in row["kept"] and unique:
                return row, memory, earlier[0]
    raise AssertionError("no later sample with a kept memory in the tiny persona's dataset")


def test_marks_drop_samples_and_memories_until_undone(lena):
    folder, env = lena
    before = _bytes(folder)
    stats_before = (folder / "stats.json").read_bytes()
    original = _written(folder)
    rows = list(read_jsonl(folder / "raft.jsonl"))
    sample, memory, dropped = _marks(rows)
    mark(folder, dropped["id"], None, True)
    review = mark(folder, sample["id"], memory["chunk_id"], True)
    assert review == Review({dropped["id"]}, {sample["id"]: {memory["chunk_id"]}})
    assert json.loads((folder / "review.json").read_text()) == {
        "drop_samples": [dropped["id"]],
        "drop_memories": {sample["id"]: [memory["chunk_id"]]},
    }

    result = run_cli("raft", "ft:gen", "lena", "--oai", env=env)
    assert result.returncode == 0, result.stderr
    assert "; 0 model calls; 1 samples dropped in review" in result.stdout
    assert (folder / "raft.jsonl").read_bytes() == before["raft.jsonl"]
    written = _written(folder)
    sharegpt = json.loads((folder / "sharegpt.json").read_text())
    assert set(written) == {s["id"] for s in sharegpt} == {r["id"] for r in rows} - {dropped["id"]}
    openai_lines = sum(len((folder / n).read_text().splitlines()) for n in FORMATS[:2])
    assert openai_lines == len(rows) - 1
    # The memory left every slot it was in; the sample's other kept memories stay.
    assert memory["rephrased"] in original[sample["id"]][-2]["content"]
    assert not any(memory["rephrased"] in m["content"] for ms in written.values() for m in ms)
    slot = written[sample["id"]][-2]["content"]
    others = [m for m in sample["memories"] if m["chunk_id"] in sample["kept"] and m != memory]
    assert all(m["rephrased"] in slot for m in others)
    # The dropped sample is no target, but it is still the conversation before the other.
    contents = [m["content"] for m in written[sample["id"]]]
    assert dropped["answer"] in contents[:-1]
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["review"] == {"samples_dropped": 1, "memories_dropped": 1, "unknown": []}
    assert stats["samples"] == len(rows) - 1
    assert stats["split"]["train"] + stats["split"]["valid"] == len(rows) - 1
    reviewed = _bytes(folder)

    # A full run honours the same marks, and writes raft.jsonl as made.
    full = run_cli("raft", *FT_GEN, env=env)
    assert full.returncode == 0, full.stderr
    assert "; 0 model calls; 1 samples dropped in review" in full.stdout
    assert _bytes(folder) == reviewed

    mark(folder, dropped["id"], None, False)
    review = mark(folder, sample["id"], memory["chunk_id"], False)
    assert review == Review()
    assert json.loads((folder / "review.json").read_text()) == {
        "drop_samples": [],
        "drop_memories": {},
    }
    again = run_cli("raft", "ft:gen", "lena", "--oai", env=env)
    assert again.returncode == 0, again.stderr
    assert "dropped in review" not in again.stdout
    assert _bytes(folder) == before
    assert (folder / "stats.json").read_bytes() == stats_before


def test_a_dropped_memory_leaves_its_slot_and_later_history_slots(generated):
    from raft.conversation import ConversationSpec
    from raft.dataset import Sample
    from raft.ftgen import render_interviews
    from raft.review import apply_review

    source, _, _ = generated
    samples = [Sample.from_row(r) for r in read_jsonl(source / "finetune" / "raft.jsonl")]
    spec = ConversationSpec.from_row(samples[0].made["spec"])
    first = next(s for s in samples if s.index == 0 and len(s.memories) >= 2)
    interview = [s for s in samples if s.interview == first.interview]
    for n, memory in enumerate(first.memories):  # every memory in both of its slots
        memory.rephrased, memory.useful, memory.consistent = f"I kept hive {n} once.", True, True
    first.kept = [m.chunk_id for m in first.memories]
    render_interviews(samples, spec)
    gone, stays = first.memories[0], first.memories[1]
    as_made = {s.id: json.dumps(s.messages) for s in samples}
    assert all(gone.rephrased in as_made[s.id] for s in interview)

    def render(group):
        render_interviews(group, spec)

    review = Review({interview[-1].id}, {first.id: {gone.chunk_id}})
    kept, counts = apply_review(samples, review, render)
    assert counts == {"samples_dropped": 1, "memories_dropped": 1, "unknown": []}
    assert [s.id for s in kept] == [s.id for s in samples if s.id != interview[-1].id]
    for sample in kept:
        text = json.dumps(sample.messages)
        if sample.interview == first.interview:
            assert gone.rephrased not in text and stays.rephrased in text
        else:
            assert sample is next(s for s in samples if s.id == sample.id)  # not even copied
    assert {s.id: json.dumps(s.messages) for s in samples} == as_made  # the input is unchanged
    again, _ = apply_review(samples, Review(), render)
    assert again == samples


def test_marks_matching_nothing_are_warned_about(lena):
    folder, env = lena
    before = _bytes(folder)
    real = next(read_jsonl(folder / "raft.jsonl"))["id"]
    mark(folder, "no-such-interview:3", None, True)
    mark(folder, real, "no-such-chunk", True)
    result = run_cli("raft", "ft:gen", "lena", "--oai", env=env)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "review.json" in line]
    assert len(warnings) == 1 and "warning" in warnings[0] and "no-such-interview:3" in warnings[0]
    stats = json.loads((folder / "stats.json").read_text())
    assert stats["review"] == {
        "samples_dropped": 0,
        "memories_dropped": 0,
        "unknown": ["no-such-interview:3", f"{real}/no-such-chunk"],
    }
    assert _bytes(folder) == before


def test_a_review_file_of_the_wrong_shape_stops_ft_gen(lena):
    folder, env = lena
    before = _bytes(folder)
    (folder / "review.json").write_text('{"drop_samples": "lena-1:0"}\n')
    result = run_cli("raft", "ft:gen", "lena", "--oai", env=env)
    assert result.returncode == 2
    assert "review.json" in result.stderr and "drop_samples" in result.stderr
    assert _bytes(folder) == before


@pytest.mark.parametrize(
    "text,problem",
    [
        ("{not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"drop_sample": []}', "unknown key 'drop_sample'"),
        ('{"drop_samples": ["a", 3]}', '"drop_samples" must be a list'),
        ('{"drop_memories": ["a"]}', '"drop_memories" must map'),
        ('{"drop_memories": {"a": "chunk"}}', '"drop_memories" must map'),
    ],
)
def test_a_bad_review_file_is_named_with_what_is_wrong(tmp_path, text, problem):
    (tmp_path / "review.json").write_text(text)
    with pytest.raises(UsageError, match="review.json") as raised:
        load_review(tmp_path)
    assert problem in str(raised.value)


def test_no_review_file_is_an_empty_review(tmp_path):
    assert load_review(tmp_path) == Review()


MARKER = """
import sys
from raft.review import mark
folder, who = sys.argv[1], sys.argv[2]
for i in range(20):
    if i % 2:
        mark(folder, f"{who}:{i}", f"chunk-{i}", True)
    else:
        mark(folder, f"{who}:{i}", None, True)
"""


def test_marks_from_processes_at_once_are_all_kept(tmp_path):
    marking = [
        subprocess.Popen([sys.executable, "-c", MARKER, str(tmp_path), who], cwd=REPO)
        for who in ("a", "b")
    ]
    assert [process.wait(timeout=120) for process in marking] == [0, 0]
    review = load_review(tmp_path)
    expected = [f"{who}:{i}" for who in ("a", "b") for i in range(20)]
    assert review.samples == {s for s in expected if int(s.split(":")[1]) % 2 == 0}
    assert review.memories == {
        s: {f"chunk-{s.split(':')[1]}"} for s in expected if int(s.split(":")[1]) % 2
    }
    assert len(review.samples) + len(review.memories) == 40
