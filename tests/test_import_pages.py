"""`raft transcript:add` keeps what the people in an interview say and leaves out what the page
says (issue 27): a sign-off set in italics, follow/related/further-links blocks and link lists
are left out and counted in the summary, pull quotes set as headings stay in the answer; and
Podcasting 2.0 transcripts (JSON segments, HTML with <cite> speakers, SRT/VTT), from a file or
by URL from a real server on 127.0.0.1, are read by their speaker conventions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.helpers import run_cli
from tests.tiny_persona import TARGET


def add(env: dict[str, str], *args: str):
    return run_cli("raft", "transcript:add", "lena", *args, env=env)


def written(result, persona: Path) -> dict:
    """The JSON of the transcript the command reported writing."""
    assert result.returncode == 0, result.stderr
    out = Path(result.stdout.strip().splitlines()[-1].rsplit(" -> ", 1)[1])
    assert out.parent == persona / "transcripts"
    return json.loads(out.read_text())


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raft: error: "), result.stderr
    return lines[0]


def words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


def serve(httpserver: HTTPServer, path: str, body: str, content_type: str) -> str:
    httpserver.expect_request(path).respond_with_data(body, content_type=content_type)
    return httpserver.url_for(path)


# A page with an introduction, a section heading, the author's pull quotes set as <h3> between
# the paragraphs of her answers (one of them a copy of a sentence she says), and an italic
# sign-off with a link after the last answer.
INTRO = (
    "Every month we sit down with someone who keeps bees in an odd place. "
    "This time: a laundrette roof in Leeds."
)
SIGN_OFF = (
    "Want to know more about Lena and her bees? Follow her on Mastodon and read her blog. "
    "Check back in soon for our next interview with a keeper of odd hives!"
)
PULL_QUOTE_PAGE = f"""<!doctype html>
<html><head><title>Ten minutes with Lena Marsh | The Hive Report</title>
<meta property="article:published_time" content="2023-09-12T08:00:00Z">
<meta name="author" content="Jo Park">
</head><body>
<nav><a href="/">Home</a> <a href="/interviews">Interviews</a></nav>
<article>
<h1>Ten minutes with Lena Marsh</h1>
<p>{INTRO}</p>
<h2>The roof</h2>
<p><strong>How did the hives end up on a laundrette?</strong></p>
<p>The owner asked me what I did on Saturdays, and I told her. She pointed at the ceiling.</p>
<h3>A roof is just a field that nobody has noticed yet.</h3>
<p>Two hives went up that spring, and a third the year after.</p>
<h3>She pointed at the ceiling.</h3>
<p>The dryers keep the roof warm all winter, so the bees fly early.</p>
<p><strong>What do the bees feed on in the middle of a city?</strong></p>
<p>Lime trees along the canal, window boxes, and the cemetery, which is full of clover.</p>
<h3>Nobody mows a cemetery in May.</h3>
<p>That is the secret of city honey: forgotten corners.</p>
<p><em>{SIGN_OFF.replace("Mastodon", '<a href="https://social.example/@lena">Mastodon</a>')}</em></p>
</article>
<footer>Copyright The Hive Report.</footer>
</body></html>
"""
PULL_QUOTE_EXCHANGES = [
    [
        "How did the hives end up on a laundrette?",
        "The owner asked me what I did on Saturdays, and I told her. She pointed at the ceiling."
        "\n\nA roof is just a field that nobody has noticed yet."
        "\n\nTwo hives went up that spring, and a third the year after."
        "\n\nThe dryers keep the roof warm all winter, so the bees fly early.",
    ],
    [
        "What do the bees feed on in the middle of a city?",
        "Lime trees along the canal, window boxes, and the cemetery, which is full of clover."
        "\n\nNobody mows a cemetery in May."
        "\n\nThat is the secret of city honey: forgotten corners.",
    ],
]


def test_sign_off_left_out_and_pull_quotes_kept_in_the_answer(lena, httpserver: HTTPServer):
    persona, env = lena
    url = serve(httpserver, "/interviews/lena-marsh.html", PULL_QUOTE_PAGE, "text/html")
    result = add(env, url)
    saved = written(result, persona)
    assert saved["exchanges"] == PULL_QUOTE_EXCHANGES
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    # What was left out, and why, in the summary: the introduction, the section heading and
    # the copied pull quote, the sign-off.
    intro, headings, end = words(INTRO), words("The roof", "She pointed at the ceiling."), 31
    assert (intro, end) == (21, words(SIGN_OFF))
    total = intro + headings + end
    assert (
        f"transcript:add lena: left out of the page: {total} words ({intro} before the first "
        f"question, {headings} in headings, {end} after the interview)"
    ) in result.stdout


# A page whose link lists carry bold labels: "Further links:" over paragraphs of links,
# "Related posts:" over a list of links with a description each, and a "Read also" link between
# two exchanges.
LINKS_PAGE = """<!doctype html>
<html><head><title>Lena Marsh on bread | Flour Notes</title>
<meta property="article:published_time" content="2023-10-02">
<meta name="author" content="Sam Lee">
</head><body>
<article>
<h1>Lena Marsh on bread</h1>
<p><strong>How old is Gerald?</strong></p>
<p>Nine years old this winter. He came from a jar my aunt kept in her pantry for decades.</p>
<p>Read also: <a href="https://flour.example/heatwave">How Gerald survived the heatwave</a></p>
<p><strong>How long does a loaf take?</strong></p>
<p>Forty hours from flour to crust, most of it waiting in a cold kitchen.</p>
<p><strong>Further links:</strong></p>
<p><a href="https://flour.example/gerald">Gerald, the starter that ate Leeds</a></p>
<p><a href="https://flour.example/crust">Why a slow loaf has a better crust, by Lena Marsh</a>
(Flour Notes, 2022)</p>
<p><strong>Related posts:</strong></p>
<ul>
<li><a href="https://flour.example/rye">Rye for beginners</a>, a guide to a first loaf
in six steps</li>
<li><a href="https://flour.example/salt">How much salt is enough</a>, with a table of flours</li>
</ul>
</article>
</body></html>
"""


def test_link_lists_are_never_exchanges(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "lena-bread.html"
    source.write_text(LINKS_PAGE)
    result = add(env, str(source))
    saved = written(result, persona)
    exchanges = [
        [
            "How old is Gerald?",
            "Nine years old this winter. He came from a jar my aunt kept in her pantry for "
            "decades.",
        ],
        [
            "How long does a loaf take?",
            "Forty hours from flour to crust, most of it waiting in a cold kitchen.",
        ],
    ]
    assert saved["exchanges"] == exchanges
    assert saved["participants"] == {"q": "Sam Lee", "a": TARGET}
    asked, answered = (words(*(pair[side] for pair in exchanges)) for side in (0, 1))
    assert f"2 exchanges (questions {asked} words, answers {answered} words)" in result.stdout
    # Paragraphs mostly of links (and the label over them), and everything from "Related
    # posts:" on: its list is not mostly links, but comes after the interview.
    links = words(
        "Read also: How Gerald survived the heatwave",
        "Further links:",
        "Gerald, the starter that ate Leeds",
        "Why a slow loaf has a better crust, by Lena Marsh (Flour Notes, 2022)",
    )
    end = words(
        "Related posts:",
        "Rye for beginners, a guide to a first loaf in six steps",
        "How much salt is enough, with a table of flours",
    )
    assert (
        f"left out of the page: {links + end} words ({links} in link lists, {end} after the "
        "interview)"
    ) in result.stdout


# The same rules where the page names its speakers: a pull quote between two paragraphs of
# the author's answer stays hers; a heading between her answer and the next question is a
# section title; "Related:" and the links after the last answer are the page's.
NAMED_PAGE = """<!doctype html>
<html><head><title>Market day</title>
<meta property="article:published_time" content="2024-03-09">
</head><body><main>
<p><strong>Ada Flint:</strong> Why the Saturday market, and not a shop?</p>
<p><strong>Lena Marsh:</strong> Because people ask where the honey comes from.</p>
<h3>I can point at the roof from my stall.</h3>
<p>That answer sells more jars than any label could.</p>
<h2>Prices</h2>
<p><strong>Ada Flint:</strong> What does a jar cost?</p>
<p><strong>Lena Marsh:</strong> Nine pounds, and every penny goes into frames.</p>
<p>Related: <a href="https://market.example/stalls">The stalls of Kirkgate</a>, a map.</p>
</main></body></html>
"""


def test_named_speakers_keep_their_pull_quotes(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "market.html"
    source.write_text(NAMED_PAGE)
    result = add(env, str(source))
    saved = written(result, persona)
    assert saved["participants"] == {"q": "Ada Flint", "a": TARGET}
    assert saved["exchanges"] == [
        [
            "Why the Saturday market, and not a shop?",
            "Because people ask where the honey comes from.\n\n"
            "I can point at the roof from my stall.\n\n"
            "That answer sells more jars than any label could.",
        ],
        ["What does a jar cost?", "Nine pounds, and every penny goes into frames."],
    ]
    assert "left out of the page: 8 words (1 in headings, 7 in link lists)" in result.stdout


# Podcasting 2.0 JSON: word by word, as transcription services write it (a split-off "'s",
# punctuation and quotation marks of their own, segments with no speaker continuing the one
# before), then phrases that carry their own spaces.
def segment(speaker: str | None, body: str, start: float) -> dict:
    found = {"startTime": start, "endTime": start + 0.25, "body": body}
    return found | ({"speaker": speaker} if speaker else {})


PODCAST_SEGMENTS = [
    *(
        segment("Jo Park", body, n / 4)
        for n, body in enumerate(["Welcome", "to", "the", "roof", ".", "Why", "bees", "?"])
    ),
    *(
        segment(TARGET if n == 0 else None, body, 2 + n / 4)
        for n, body in enumerate(
            ["Because", "of", "the", "“", "window", "boxes", "”", ",", "mostly"]
        )
    ),
    segment(TARGET, ".\n", 5.0),
    segment(TARGET, "It", 5.5),
    segment(TARGET, "'s", 5.75),
    segment(TARGET, "a", 6.0),
    segment(TARGET, "field", 6.25),
    segment(TARGET, "nobody", 6.5),
    segment(TARGET, "mows", 6.75),
    segment(TARGET, "!", 7.0),
    segment("Jo Park", "And the bread?", 8.0),
    segment(TARGET, "Gerald, always.", 9.0),
    segment(TARGET, " He is nine", 10.0),
    segment(TARGET, " years old.", 11.0),
]
PODCAST_EXCHANGES = [
    [
        "Welcome to the roof. Why bees?",
        "Because of the “window boxes”, mostly. It's a field nobody mows!",
    ],
    ["And the bread?", "Gerald, always. He is nine years old."],
]
PODCAST_JSON = json.dumps({"version": "1.0.0", "segments": PODCAST_SEGMENTS}, indent=1)


def test_podcasting_json_from_a_file(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "episode-12.json"
    source.write_text(PODCAST_JSON)
    result = add(env, str(source), "--date", "2024-05-01")
    saved = written(result, persona)
    assert saved["exchanges"] == PODCAST_EXCHANGES
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert saved["imported"] == {"from": "episode-12.json", "format": "podcast-json"}
    assert "2 exchanges (questions 9 words, answers 18 words)" in result.stdout

    # A segment without a body is a bad file: one line naming it, exit 2, nothing written.
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"version": "1.0.0", "segments": [{"speaker": "Jo Park"}]}))
    line = one_line_error(add(env, str(broken), "--date", "2024-05-02"))
    assert line.startswith(f"raft: error: {broken}: segment 1 ") and '"body"' in line
    unnamed = tmp_path / "unnamed.json"
    unnamed.write_text(json.dumps({"segments": [{"body": "Hello"}]}))
    line = one_line_error(add(env, str(unnamed), "--date", "2024-05-02"))
    assert line == f"raft: error: {unnamed}: no segment names its speaker"
    assert not list((persona / "transcripts").glob("2024-05-02-*"))


# Podcasting 2.0 HTML: a <cite> names the speaker ("Name:", or "Name :"), a <time> follows.
PODCAST_HTML = f"""<!doctype html>
<html><head><title>Episode 12 transcript</title></head><body>
<cite>Jo Park:</cite>
<time>0:00</time>
<p>Welcome to the roof.</p>
<p>Why bees?</p>
<cite>{TARGET} :</cite>
<time>0:02</time>
<p>Because of the “window boxes”, mostly. It&#8217;s a field nobody mows!</p>
<cite>Jo Park:</cite>
<time>0:08</time>
<p>And the bread?</p>
<cite>{TARGET}:</cite>
<time>0:09</time>
<p>Gerald, always.<br>He is nine years old.</p>
</body></html>
"""


def test_podcasting_html_by_url(lena, httpserver: HTTPServer):
    persona, env = lena
    url = serve(httpserver, "/episodes/12/transcript.html", PODCAST_HTML, "text/html")
    result = add(env, url, "--date", "2024-05-01")
    saved = written(result, persona)
    assert saved["exchanges"] == [
        ["Welcome to the roof.\n\nWhy bees?", PODCAST_EXCHANGES[0][1].replace("'", "\u2019")],
        PODCAST_EXCHANGES[1],
    ]
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert saved["imported"] == {"from": url, "format": "podcast-html"}
    assert saved["url"] == url


# The same episode as a host serves it: JSON from a URL without a suffix (application/json),
# SRT as application/x-subrip (a new card, opening with "Name:", at each change of speaker,
# two short lines a card), WebVTT with <v Name> as text/vtt.
PODCAST_SRT = f"""1
00:00:00,000 --> 00:00:02,000
Jo Park: Welcome to the roof.
Why bees?

2
00:00:02,000 --> 00:00:04,000
{TARGET}: Because of the “window
boxes”, mostly.

3
00:00:04,000 --> 00:00:07,500
It's a field nobody mows!

4
00:00:08,000 --> 00:00:09,000
Jo Park: And the bread?

5
00:00:09,000 --> 00:00:12,000
{TARGET}: Gerald, always.
He is nine years old.
"""
PODCAST_VTT = f"""WEBVTT

00:00:00.000 --> 00:00:02.000
<v Jo Park>Welcome to the roof. Why bees?

00:00:02.000 --> 00:00:05.000
<v {TARGET}>Because of the “window boxes”, mostly.

00:00:05.000 --> 00:00:07.500
<v {TARGET}>It's a field nobody mows!

00:00:08.000 --> 00:00:09.000
<v Jo Park>And the bread?

00:00:09.000 --> 00:00:12.000
<v {TARGET}>Gerald, always. He is nine years old.
"""


@pytest.mark.parametrize(
    "body,content_type,fmt",
    [
        (PODCAST_JSON, "application/json", "podcast-json"),
        (PODCAST_SRT, "application/x-subrip", "srt"),
        (PODCAST_VTT, "text/vtt; charset=utf-8", "vtt"),
    ],
)
def test_podcasting_transcripts_by_url(lena, httpserver, body, content_type, fmt):
    persona, env = lena
    url = serve(httpserver, "/feeds/roof/episodes/12/transcript", body, content_type)
    saved = written(add(env, url, "--date", "2024-06-01"), persona)
    assert saved["exchanges"] == PODCAST_EXCHANGES
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert saved["imported"] == {"from": url, "format": fmt}
