"""Who says what in captions and text: a speaker labelled once (at a line's start or inside
a line), speaker changes with no names (`>>`, dialogue dashes, rolling auto-captions) for
--assign-speakers, and a caption file cut off inside its last cue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raft.backends.llm import CachedLLM, Reply, Usage
from raft.errors import UsageError
from raft.interviews.read import read_interview
from tests.helpers import run_cli
from tests.tiny_persona import TARGET

# A co-host who speaks one line, labelled inside the host's cue, and the author's answer
# labelled inside the host's next question. "Note:" is prose: it labels no one.
CO_HOST_SRT = """1
00:00:01,000 --> 00:00:04,000
Jo Park: Welcome to the roof. I'm here with my co-host, Dan. Dan Ott: Yo. What up, Jo?

2
00:00:04,000 --> 00:00:06,000
Jo Park: Our guest keeps bees. Lena, why bees?

3
00:00:06,000 --> 00:00:09,000
Lena Marsh: Because of the window boxes.
Note: they face south.

4
00:00:09,000 --> 00:00:11,000
Jo Park: And the bread? Lena Marsh: Gerald, always.
"""

# A guest whose full name labels one line, in a file cut off inside its last timing line.
GUEST_SRT = """1
00:00:01,000 --> 00:00:02,000
JO PARK: Why bees?

2
00:00:02,000 --> 00:00:04,000
LENA MARSH: Because of the window boxes.

3
00:00:04,000 --> 00:00:06,000
JO PARK: And the bread?

4
00:00:06,000 --> 00:00:08,000
LENA MARSH: Gerald, always.

5
00:00:08,000 --> 00:00:11,000
MO OKAFOR: I have tasted that bread at the market. It is the best in Leeds.

6
00:00:11,000 --> 00:00:12,000
LENA MARSH: Thank you, Mo.

7
00:00:1"""


def add(env: dict[str, str], *args: str):
    return run_cli("raft", "transcript:add", "lena", *args, env=env)


def written(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(Path(result.stdout.strip().splitlines()[-1].rsplit(" -> ", 1)[1]).read_text())


def test_a_speaker_labelled_once_inside_a_line_is_split_out_and_counted(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "roof.srt"
    source.write_text(CO_HOST_SRT)
    result = add(env, str(source), "--date", "2023-04-05", "--interviewer", "Jo Park")
    saved = written(result)
    assert saved["exchanges"] == [
        [
            "Welcome to the roof. I'm here with my co-host, Dan.\n\nYo. What up, Jo?\n\n"
            "Our guest keeps bees. Lena, why bees?",
            "Because of the window boxes. Note: they face south.",
        ],
        ["And the bread?", "Gerald, always."],
    ]
    assert "speakers Jo Park (q), Dan Ott (q), Lena Marsh (a)" in result.stdout
    assert "words by speaker: Jo Park 20, Dan Ott 4, Lena Marsh 11\n" in result.stdout
    assert result.stderr == ""  # a whole file: no warning


def test_a_guest_labelled_once_asks_and_a_cut_off_last_cue_is_warned_about(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "market.srt"
    source.write_text(GUEST_SRT)
    result = add(env, str(source), "--date", "2023-04-06", "--interviewer", "JO PARK")
    saved = written(result)
    assert saved["exchanges"] == [
        ["Why bees?", "Because of the window boxes."],
        ["And the bread?", "Gerald, always."],
        ["I have tasted that bread at the market. It is the best in Leeds.", "Thank you, Mo."],
    ]
    assert "words by speaker: JO PARK 5, LENA MARSH 10, MO OKAFOR 14\n" in result.stdout
    assert result.stderr == (
        f"raft: warning: {source}: the last cue is cut off (the file ends inside its timing "
        "line); the file may be truncated\n"
    )


def test_a_vtt_cut_off_in_its_last_cue_is_warned_about(lena, tmp_path):
    """Cut inside the last timing line, or after it: the cues before it are read."""
    persona, env = lena
    for cut, answer, problem in [
        ("00:00:0", "Window boxes.", "inside its timing line"),
        ("00:00:05.000", "Lime blossom.", "before its text"),
    ]:
        vtt = tmp_path / f"cut-{len(cut)}.vtt"
        vtt.write_text(
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nJo Park: Why bees?\n\n"
            f"00:00:02.000 --> 00:00:04.000\nLena Marsh: {answer}\n\n00:00:04.000 --> {cut}"
        )
        result = add(env, str(vtt), "--date", "2023-04-07")
        assert written(result)["exchanges"] == [["Why bees?", answer]]
        assert f"raft: warning: {vtt}: the last cue is cut off (the file ends " in result.stderr
        assert problem in result.stderr


def test_labels_inside_text_are_known_names_only(lena, tmp_path):
    """Inside a paragraph, only a name that labels a paragraph elsewhere (or is given) starts
    a turn; a "Note:" after a sentence, or a name never used as a label, stays prose."""
    persona, env = lena
    source = tmp_path / "letters.txt"
    source.write_text(
        "Jo Park: Why bees? Lena Marsh: Window boxes. Note: they face south.\n\n"
        "Jo Park: And the bread? Ask Sam Reed: he knows.\n\n"
        "Lena Marsh: Gerald, always. Jo Park: Really? Lena Marsh: Really.\n"
    )
    saved = written(add(env, str(source), "--date", "2023-04-08"))
    assert saved["exchanges"] == [
        ["Why bees?", "Window boxes. Note: they face south."],
        ["And the bread? Ask Sam Reed: he knows.", "Gerald, always."],
        ["Really?", "Really."],
    ]


# YouTube's rolling auto-captions: each cue repeats the last line of the one before (and a
# 10 ms cue holds only that line), words carry timestamps and <c> spans, `>>` (escaped)
# marks a new speaker, also in the middle of a line.
ROLLING_VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.000 --> 00:00:02.000 align:start position:0%
\u0020
&gt;&gt; welcome<00:00:00.400><c> to</c><00:00:00.800><c> the</c><00:00:01.200><c> roof.</c>

00:00:02.000 --> 00:00:02.010 align:start position:0%
&gt;&gt; welcome to the roof.
\u0020

00:00:02.010 --> 00:00:04.000 align:start position:0%
&gt;&gt; welcome to the roof.
why<00:00:02.500><c> bees?</c>

00:00:04.000 --> 00:00:06.000 align:start position:0%
why bees?
&gt;&gt; because<00:00:04.500><c> of</c><00:00:05.000><c> the</c><00:00:05.500><c> window</c>

00:00:06.000 --> 00:00:08.000 align:start position:0%
&gt;&gt; because of the window
boxes.<00:00:06.500><c> &gt;&gt; and</c><00:00:07.000><c> the</c><00:00:07.500><c> bread?</c>

00:00:08.000 --> 00:00:10.000 align:start position:0%
boxes. &gt;&gt; and the bread?
&gt;&gt; [Music] gerald,<00:00:08.500><c> always.</c>
"""
ROLLING_TURNS = [
    "welcome to the roof. why bees?",
    "because of the window boxes.",
    "and the bread?",
    "gerald, always.",
]

# Dialogue dashes: two speakers in one cue, each line after a dash.
DASHES_SRT = """1
00:00:01,000 --> 00:00:03,000
- Welcome to the roof. Why bees?
- Because of the window boxes.

2
00:00:03,000 --> 00:00:04,000
They face south.

3
00:00:04,000 --> 00:00:06,000
- And the bread?
- Gerald, always.
"""
DASHES_TURNS = [
    "Welcome to the roof. Why bees?",
    "Because of the window boxes. They face south.",
    "And the bread?",
    "Gerald, always.",
]

_PARAGRAPH = re.compile(r"<paragraph-[0-9a-f]{12}>\n(.*?)\n</paragraph-[0-9a-f]{12}>", re.S)


class AsksWithQuestionMarks:
    """A real LLM implementation that labels a paragraph ending in "?" a question and any
    other an answer, and keeps the paragraphs it was asked about."""

    model_id = "asks-with-question-marks"
    concurrency = 1

    def __init__(self):
        self.seen: list[str] = []

    def complete(self, messages, *, schema=None, **params):
        paragraphs = _PARAGRAPH.findall(messages[-1]["content"])
        self.seen += paragraphs
        labels = ["q" if p.endswith("?") else "a" for p in paragraphs]
        return Reply(json.dumps({"labels": labels}), Usage(1))


def test_unnamed_speaker_changes_are_refused_without_assign_speakers(lena, tmp_path):
    persona, env = lena
    for name, text in [("rolling.vtt", ROLLING_VTT), ("dashes.srt", DASHES_SRT)]:
        source = tmp_path / name
        source.write_text(text)
        result = add(env, str(source), "--date", "2023-04-09", "--interviewer", "Jo Park")
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            f"raft: error: {source}: the speaker changes (>> or - ) but no cue names who "
            "speaks; pass --assign-speakers to label the turns\n"
        )
    assert not (persona / "transcripts" / "2023-04-09-rolling.json").exists()


def test_assign_speakers_labels_the_turns_of_unnamed_captions(tmp_path):
    for name, text, turns in [
        ("rolling.vtt", ROLLING_VTT, ROLLING_TURNS),
        ("dashes.srt", DASHES_SRT, DASHES_TURNS),
    ]:
        source = tmp_path / name
        source.write_text(text)
        model = AsksWithQuestionMarks()
        interview = read_interview(
            str(source),
            target=TARGET,
            interviewer="Jo Park",
            when="2023-04-09",
            labeller=CachedLLM(model),
        )
        assert model.seen == turns  # each turn once, as clean text: one label per turn
        assert interview.exchanges == [turns[:2], turns[2:]]
        assert interview.speakers == [
            ("Jo Park", "q", len(f"{turns[0]} {turns[2]}".split())),
            (TARGET, "a", len(f"{turns[1]} {turns[3]}".split())),
        ]
        assert interview.made["labelled_by"] == model.model_id


def test_assign_speakers_labels_a_pages_text_not_its_links_and_refuses_podcasting(tmp_path):
    """The labeller sees a page's paragraphs without its link lists; a Podcasting 2.0
    transcript names every speaker, so there is nothing to label."""
    from tests.test_import_pages import LINKS_PAGE, PODCAST_JSON

    page = tmp_path / "bread.html"
    page.write_text(LINKS_PAGE)
    model = AsksWithQuestionMarks()
    read_interview(str(page), target=TARGET, interviewer="Sam Lee", labeller=CachedLLM(model))
    assert model.seen[:4] == [
        "How old is Gerald?",
        "Nine years old this winter. He came from a jar my aunt kept in her pantry for decades.",
        "How long does a loaf take?",
        "Forty hours from flour to crust, most of it waiting in a cold kitchen.",
    ]
    assert not any("flour.example" in text or "Gerald, the starter" in text for text in model.seen)
    podcast = tmp_path / "episode.json"
    podcast.write_text(PODCAST_JSON)
    with pytest.raises(UsageError, match=r"episode\.json: a Podcasting 2\.0 transcript names"):
        read_interview(
            str(podcast),
            target=TARGET,
            labeller=CachedLLM(AsksWithQuestionMarks()),
        )
