"""Bad input meets one clear line naming the thing at fault, a non-zero exit, no traceback,
and leaves every existing file as it was. (Bad corpus sources: test_bad_sources.py.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.tiny_persona import FT_GEN, INTERVIEWS, digests, write_tiny_persona


def one_line_error(result, code: int = 1) -> str:
    """The single stderr line of a refused command (asserting the exit code and no traceback)."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "name", ["../x", "x/y", "Sample", "has space", "", "-x", "_x", "a" * 65, "caf\u00e9"]
)
@pytest.mark.parametrize("program,command", [("raft", "info"), ("raft", "ft:gen"), ("ratf", "run")])
def test_invalid_persona_name_is_refused_in_one_line(data_dir, program, command, name):
    result = run_cli(program, command, "--", name)
    line = one_line_error(result, 2)
    assert result.stdout == ""
    assert "invalid persona name" in line and repr(name) in line


def test_longest_valid_name_is_accepted(data_dir):
    (data_dir / ("a" * 64)).mkdir()
    assert run_cli("raft", "info", "a" * 64).returncode == 0


def test_unknown_persona_says_how_to_start(data_dir):
    line = one_line_error(run_cli("raft", "info", "nobody"), 2)
    assert "unknown persona 'nobody'" in line and "raft fetch nobody" in line


GOOD = {"participants": {"q": "A", "a": "B"}, "date": "2021-01-01", "exchanges": [["q", "a"]]}


def transcript(**changes) -> bytes:
    return json.dumps(GOOD | changes).encode()


@pytest.mark.parametrize(
    "content,message",
    [
        (b"{not json", "not valid JSON (line 1"),
        (b"[1, 2]", "expected a JSON object"),
        (transcript(participants={"q": "A"}), 'missing "participants"'),
        (transcript(participants=["A", "B"]), 'missing "participants"'),
        (transcript(date="1st May"), "bad date '1st May'"),
        (transcript(date=20210101), "bad date 20210101"),
        (transcript(date="20210101"), "bad date '20210101'"),
        (transcript(date="2021-02-30"), "bad date '2021-02-30'"),
        (transcript(exchanges="q then a"), 'missing "exchanges"'),
        (transcript(exchanges=[["q"]]), "exchange 1 is not a [question, answer] pair"),
        (transcript(exchanges=[["q", 7]]), "exchange 1 is not a [question, answer] pair"),
        (transcript(exchanges=[["q", " "]]), "exchange 1 has an empty question or answer"),
        (transcript(url=5), '"url" must be a string'),
        (transcript(exchanges=[["q", "word " * 2_000_000]]), "longer than 200,000 characters"),
        (transcript().replace(b'"B"', b'"Ren\xe9e"'), "not UTF-8 text"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) else "",
)
def test_malformed_transcript_fails_clearly_and_keeps_outputs(
    generated, tmp_path, content, message
):
    persona, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(persona, data / "lena")
    bad = data / "lena" / "transcripts" / "2023-02-02-broken.json"
    bad.write_bytes(content)
    before = digests(data / "lena" / "finetune")
    line = one_line_error(run_cli("raft", *FT_GEN, env={**env, "RAFT_DATA_DIR": str(data)}))
    assert message in line and str(bad) in line
    assert digests(data / "lena" / "finetune") == before


def test_the_same_interview_in_two_files_is_refused(generated, tmp_path):
    persona, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(persona, data / "lena")
    original = data / "lena" / "transcripts" / "2021-06-01-garden-radio.json"
    renamed = original.with_name("2021-06-01-garden-radio-copy.json")
    shutil.copy(original, renamed)
    before = digests(data / "lena" / "finetune")
    line = one_line_error(run_cli("raft", *FT_GEN, env={**env, "RAFT_DATA_DIR": str(data)}))
    assert "are the same interview (same url)" in line
    assert str(renamed) in line and str(original) in line
    assert "keep one of the two files" in line
    assert digests(data / "lena" / "finetune") == before

    # Without the url, the exchanges give it away; transcript:add refuses it and writes nothing.
    renamed.unlink()
    copy = json.loads(original.read_text()) | {"url": ""}
    source = tmp_path / "again.json"
    source.write_text(json.dumps(copy))
    listing = sorted((data / "lena" / "transcripts").iterdir())
    result = run_cli(
        "raft", "transcript:add", "lena", str(source), env={"RAFT_DATA_DIR": str(data)}
    )
    assert f"{source} repeats most of" in one_line_error(result, code=2)
    assert sorted((data / "lena" / "transcripts").iterdir()) == listing


def test_transcript_add_names_a_broken_file_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    broken = tmp_path / "broken.json"
    broken.write_bytes(transcript(exchanges=[["q"]]))
    listing = sorted((data / "lena" / "transcripts").iterdir())
    result = run_cli(
        "raft", "transcript:add", "lena", str(broken), env={"RAFT_DATA_DIR": str(data)}
    )
    line = one_line_error(result, code=2)  # a bad input file (README: exit status)
    assert f"{broken}: exchange 1 is not a [question, answer] pair" in line
    assert sorted((data / "lena" / "transcripts").iterdir()) == listing


def contents(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    "command,code,first",
    [
        (["raft", "chunk"], 2, "run `raft fetch lena` first"),
        (["raft", "embed"], 2, "run `raft chunk lena` first"),
        (["raft", "ft:gen"], 2, "run `raft embed lena` first"),
        (["raft", "ft:run"], 2, "run `raft ft:gen lena` first"),
        (["raft", "export", "--gguf"], 2, "run `raft ft:run lena` first"),
        (["raft", "bench:setup"], 2, "run `raft embed lena` first"),
        (["raft", "chat", "--once", "Hello?"], 2, "run `raft embed lena` first"),
        (["ratf", "run"], 2, "run `raft bench:setup lena` first"),
        (["ratf", "score"], 2, "run `ratf run lena` first"),
        (["ratf", "report"], 2, "run `ratf score lena` first"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_a_command_run_too_early_says_which_to_run_first(tmp_path, command, code, first):
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    before = contents(data)
    program, name, *rest = command
    result = run_cli(program, name, "lena", *rest, env={"RAFT_DATA_DIR": str(data)})
    assert first in one_line_error(result, code)
    after = contents(data)
    assert {path: after.get(path) for path in before} == before


def predictions(path, rows) -> str:
    path.write_text("".join(json.dumps({"id": r["id"], "reply": r["answer"]}) + "\n" for r in rows))
    return str(path)


def test_predictions_are_scored_and_bad_files_refused(benched, tmp_path):
    source, env = benched
    persona = tmp_path / "data" / "lena"
    shutil.copytree(source, persona)
    env = {**env, "RAFT_DATA_DIR": str(persona.parent)}
    items = [json.loads(line) for line in (persona / "bench" / "items.jsonl").open()]
    held_out = INTERVIEWS["benchmark/2023-01-10-held-out-podcast.json"]
    assert [i["question"] for i in items] == [q for q, _ in held_out["exchanges"]]
    good = predictions(tmp_path / "good.jsonl", items)
    result = run_cli("ratf", "score", "lena", "--predictions", good, env=env)
    assert result.returncode == 0, result.stderr
    folder = sorted((persona / "ratf" / "runs").iterdir())[-1]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["metrics"]["chrf"]["systems"]["predictions"]["mean"] == pytest.approx(1.0)
    runs = sorted((persona / "ratf" / "runs").iterdir())

    cases = {
        "unknown item id 'nope#0'": [*items, {"id": "nope#0", "answer": "x"}],
        "appears twice": [items[0], *items],
        "no reply for 1 of 2 items": items[:1],
        "has no reply": [items[0] | {"answer": " "}, items[1]],
    }
    for problem, rows in cases.items():
        bad = predictions(tmp_path / "bad.jsonl", rows)
        line = one_line_error(run_cli("ratf", "score", "lena", "--predictions", bad, env=env), 2)
        assert problem in line and "bad.jsonl" in line
    assert sorted((persona / "ratf" / "runs").iterdir()) == runs  # no run folder left behind
