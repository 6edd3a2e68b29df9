"""Round 3 (issue 26), interviews: `raft transcript:add` reads captions and text in linear
time, refuses an over-long exchange before writing anything (exit 2, naming the input),
and refuses deeply nested JSON and sources that are not regular files in one line.

Linearity is checked by behaviour, not by timing: each hostile input below is read in one
to three seconds, while the quadratic readers took two to over six minutes of CPU on it, so
a subprocess that must finish within LIMIT seconds tells the two apart with a wide margin
either way, even on a slow, busy machine."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

from tests.helpers import BIN
from tests.tiny_persona import TARGET

LIMIT = 60  # seconds; the linear readers need at most 3 s for any input below
CAP = "exchange 1 is longer than 200,000 characters"
BEES = "the bees and the bread, and the bees again."


def add(env: dict[str, str], *args: str, **kwargs) -> subprocess.CompletedProcess:
    """`raft transcript:add lena ARGS`, killed (and the test failed) after LIMIT seconds."""
    return subprocess.run(
        [str(BIN / "raft"), "transcript:add", "lena", *args, "--date", "2024-01-01"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=LIMIT,
        **kwargs,
    )


def one_line_error(result: subprocess.CompletedProcess, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raft: error: "), result.stderr
    return lines[0]


def listing(persona: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in persona.rglob("*.json")}


def cue(second: int, speaker: str, *lines: str) -> str:
    return f"00:00:{second:02}.000 --> 00:00:{second + 2:02}.000\n<v {speaker}>" + (
        "\n".join(lines) + "\n\n"
    )


def test_hostile_markup_in_captions_and_text_is_read_in_linear_time(lena, tmp_path):
    """Cue lines of 150,000 unclosed `<`, `[`, `{\\` or `(`, and a text line of `>>` and
    50,000 spaces: each opener, or each split of the spaces, was a new scan to the end of
    the line (100,000 `<` alone took over a minute, the 50,000 spaces over two)."""
    persona, env = lena
    said = [
        ("Jo Park", "Why bees? " + "<" * 150_000),
        (TARGET, "Because " + "[" * 150_000),
        ("Jo Park", "And the bread? " + "{\\" * 70_000),
        (TARGET, "Gerald. " + "(" * 150_000),
    ]
    captions = tmp_path / "markup.vtt"
    captions.write_text("WEBVTT\n\n" + "".join(cue(2 * n, *turn) for n, turn in enumerate(said)))
    quoted = ">>" + " " * 50_000 + "the bees"
    text = tmp_path / "quoted.txt"
    text.write_text(f"Jo Park: Why bees?\n\n{TARGET}: Because\n{quoted}")
    for source in (captions, text):
        result = add(env, str(source))
        assert result.returncode == 0, result.stderr
    # Nothing closes, so nothing is markup or a label: every character is kept, as before.
    transcripts = persona / "transcripts"
    assert json.loads((transcripts / "2024-01-01-markup.json").read_text())["exchanges"] == [
        [said[0][1], said[1][1]],
        [said[2][1], said[3][1]],
    ]
    assert json.loads((transcripts / "2024-01-01-quoted.json").read_text())["exchanges"] == [
        ["Why bees?", f"Because\n{quoted}"]
    ]


def test_long_turns_are_joined_in_linear_time_then_refused_by_the_cap(lena, tmp_path):
    """One turn of 400,000 caption lines (300,000 took 2 minutes), one answer of 120,000
    labelled paragraphs (over 6 minutes): each line or paragraph copied the whole turn so far.
    Both are joined, found too long, and refused naming the input, before anything is
    written."""
    persona, env = lena
    captions = tmp_path / "long-turn.vtt"
    captions.write_text(
        "WEBVTT\n\n"
        + cue(0, "Jo Park", "Why bees?")
        + cue(2, TARGET, "Because of the window boxes.", *[BEES] * 400_000)
    )
    text = tmp_path / "long-answer.txt"
    answer = (f"{TARGET}: Paragraph {n} of one long answer, on bees." for n in range(120_000))
    text.write_text("Jo Park: Why bees?\n\n" + "\n\n".join(answer))
    before = listing(persona)
    for source in (captions, text):
        assert one_line_error(add(env, str(source))) == f"raft: error: {source}: {CAP}"
    assert listing(persona) == before


def test_an_exchange_over_the_cap_is_refused_naming_the_input(lena, tmp_path):
    """Over 200,000 characters in text, in a transcript JSON, or only once --scrub has
    replaced blocked words with longer marks: exit 2, the input named, nothing written."""
    persona, env = lena
    long = "word " * 40_001
    text = tmp_path / "long.txt"
    text.write_text(f"Jo Park: Why bees?\n\n{TARGET}: {long}")
    copy = tmp_path / "long.json"
    interview = {"participants": {"q": "Jo Park", "a": TARGET}, "date": "2024-01-01"}
    copy.write_text(json.dumps({**interview, "url": "", "exchanges": [["Why bees?", long]]}))
    config = persona / "persona.toml"
    config.write_text(config.read_text() + 'blocked_words = ["Gerald"]\n')
    scrubbed = tmp_path / "gerald.txt"  # 199,996 characters, 285,709 once scrubbed
    scrubbed.write_text(f"Jo Park: Why bees?\n\n{TARGET}: " + "Gerald " * 28_570 + "Gerald")
    before = listing(persona)
    for source, args in [(text, ()), (copy, ()), (scrubbed, ("--scrub",))]:
        line = one_line_error(add(env, str(source), *args))
        assert line == f"raft: error: {source}: {CAP}"
    assert listing(persona) == before


def test_deeply_nested_json_is_one_line_naming_the_file(lena, tmp_path):
    """A transcript nested 100,000 deep, given to transcript:add (exit 2: a bad input file)
    or found among the persona's transcripts (exit 1, and the import is undone)."""
    persona, env = lena
    deep = '{"participants": ' + "[" * 100_000 + "]" * 100_000 + "}"
    source = tmp_path / "deep.json"
    source.write_text(deep)
    line = one_line_error(add(env, str(source)))
    assert line.startswith(f"raft: error: {source}: ") and "nested too deeply" in line

    planted = persona / "transcripts" / "deep.json"
    planted.write_text(deep)
    before = listing(persona)
    good = tmp_path / "good.txt"
    good.write_text(f"Jo Park: What do bees eat?\n\n{TARGET}: Lime blossom, mostly, in June.")
    line = one_line_error(add(env, str(good)), code=1)
    assert line.startswith(f"raft: error: {planted}: ") and "nested too deeply" in line
    assert listing(persona) == before


def _at_most_2_gb() -> None:
    # Should /dev/zero ever be read again, the command fails instead of filling the memory.
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_devices_and_fifos_are_refused_without_being_read(lena, tmp_path):
    """A FIFO with no writer used to block the command for ever, /dev/zero to fill memory."""
    persona, env = lena
    fifo = tmp_path / "talk.txt"
    os.mkfifo(fifo)
    before = listing(persona)
    for source in (str(fifo), "/dev/zero"):
        line = one_line_error(add(env, source, preexec_fn=_at_most_2_gb))
        assert line == f"raft: error: {source}: not a regular file (a device, pipe or socket)"
    assert listing(persona) == before


def test_a_file_over_the_text_budget_is_refused_naming_it(lena, tmp_path):
    """The per-file text budget (RAFT_MAX_FILE_TEXT_MB) bounds what transcript:add reads."""
    persona, env = lena
    source = tmp_path / "talk.txt"
    source.write_text(f"Jo Park: Why bees?\n\n{TARGET}: " + "Bees. " * 400)  # 2.4 kB
    before = listing(persona)
    line = one_line_error(add({**env, "RAFT_MAX_FILE_TEXT_MB": "0.002"}, str(source)))
    assert line.startswith(f"raft: error: {source}: over the per-file budget: more than 0.002 MB")
    assert "RAFT_MAX_FILE_TEXT_MB" in line
    assert listing(persona) == before
    assert add(env, str(source)).returncode == 0  # within the default budget
