"""`raft transcript:add NAME SOURCE` from where interviews live: captions, interview pages (by
URL from a real server on 127.0.0.1, or saved), labelled and unlabelled text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tests.helpers import run_cli
from tests.tiny_persona import INTERVIEWS, TARGET

HELD_OUT = "benchmark/2023-01-10-held-out-podcast.json"


def add(env: dict[str, str], *args: str):
    return run_cli("raft", "transcript:add", "lena", *args, env=env)


def written(result, persona: Path, folder: str = "transcripts") -> tuple[Path, dict]:
    """The transcript the command reported writing, and its JSON."""
    assert result.returncode == 0, result.stderr
    out = Path(result.stdout.strip().splitlines()[-1].rsplit(" -> ", 1)[1])
    assert out.parent == persona / folder
    return out, json.loads(out.read_text())


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raft: error: "), result.stderr
    return lines[0]


def words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


def listing(persona: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in persona.rglob("*.json")}


# What is said, turn by turn; the caption fixtures below carry exactly these words.
SPOKEN = [
    ("Jo Park", "Welcome to the roof. Why bees?"),
    (
        TARGET,
        "Because of the window boxes on Mill Street. They feed a whole street & more. "
        "Bees taught me that.",
    ),
    ("Jo Park", "And the bread?"),
    (TARGET, "Gerald, always. He is nine years old."),
]
ASKED = words(*(text for who, text in SPOKEN if who != TARGET))
ANSWERED = words(*(text for who, text in SPOKEN if who == TARGET))

# YouTube-style rolling captions: each cue repeats the last line of the one before it
# (sometimes in a cue of its own), word timestamps and <c> spans inside cues.
VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.000 --> 00:00:02.000 align:start position:0%
<v Jo Park>Welcome to the roof.<00:00:01.200><c> Why</c><00:00:01.500><c> bees?</c></v>

00:00:02.000 --> 00:00:04.000 align:start position:0%
<v Lena Marsh>Because of the <i>window boxes</i> on Mill Street.

00:00:04.000 --> 00:00:06.000 align:start position:0%
Because of the window boxes on Mill Street.
They feed a whole<00:00:05.100><c> street &amp; more.</c>

00:00:06.000 --> 00:00:06.010 align:start position:0%
They feed a whole street &amp; more.
\u0020

00:00:06.010 --> 00:00:08.000 align:start position:0%
They feed a whole street &amp; more.
<b>Bees</b> taught me that.

00:00:08.000 --> 00:00:09.000
[Music]

00:00:09.000 --> 00:00:10.000
<v Jo Park>And the bread?</v>

00:00:10.000 --> 00:00:12.000
<v.loud Lena Marsh>Gerald, always.

00:00:12.000 --> 00:00:14.000
Gerald, always.
He is nine years old.
"""


def test_vtt_with_voice_tags_and_rolling_lines_is_imported_whole(lena):
    persona, env = lena
    source = persona.parent.parent / "roof-talk.vtt"
    source.write_text(VTT)
    result = add(env, str(source), "--date", "2023-04-02")
    out, saved = written(result, persona)
    assert out.name == "2023-04-02-roof-talk.json"
    assert saved["exchanges"] == [
        [
            "Welcome to the roof. Why bees?",
            "Because of the window boxes on Mill Street. They feed a whole street & more. "
            "Bees taught me that.",
        ],
        ["And the bread?", "Gerald, always. He is nine years old."],
    ]
    # The one other speaker the captions name asks; the date is the one given.
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert (saved["date"], saved["url"]) == ("2023-04-02", "")
    assert saved["imported"] == {"from": "roof-talk.vtt", "format": "vtt"}
    # Complete: every spoken word once, no repeated rolling line, no markup or [Music].
    assert ASKED == 9 and ANSWERED == 26
    assert f"2 exchanges (questions {ASKED} words, answers {ANSWERED} words)" in result.stdout
    assert f"2023-04-02, no url, speakers Jo Park (q), {TARGET} (a) -> {out}" in result.stdout


SRT = """1
00:00:01,000 --> 00:00:02,500
>> JO PARK: Welcome to the roof.
Why bees?

2
00:00:02,500 --> 00:00:04,000
LENA MARSH: Because of the <i>window boxes</i>
on Mill Street.

3
00:00:04,000 --> 00:00:06,000
They feed a whole street & more.

4
00:00:06,000 --> 00:00:07,000
Bees taught me that.

5
00:00:07,000 --> 00:00:08,000
>> JO PARK: And the bread?

6
00:00:08,000 --> 00:00:10,000
LENA MARSH: Gerald, always.
He is nine years old.
"""


def test_srt_with_name_labels(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "roof.srt"
    source.write_text(SRT)
    result = add(env, str(source), "--date", "2023-04-03", "--url", "https://radio.example/9")
    _, saved = written(result, persona)
    assert saved["exchanges"] == [[text for _, text in SPOKEN[:2]], [t for _, t in SPOKEN[2:]]]
    assert saved["participants"] == {"q": "JO PARK", "a": TARGET}  # as the captions name him
    assert (saved["date"], saved["url"]) == ("2023-04-03", "https://radio.example/9")
    assert f"(questions {ASKED} words, answers {ANSWERED} words)" in result.stdout
    assert "speakers JO PARK (q), LENA MARSH (a)" in result.stdout


# Layout (a): questions as whole bold paragraphs, answers the plain paragraphs after them.
BOLD_PAGE = """<!doctype html>
<html><head><title>Lena Marsh on rooftop bees | Garden Weekly</title>
<meta property="article:published_time" content="2023-05-06T09:30:00Z">
<meta name="author" content="Jo Park">
<link rel="canonical" href="https://garden.example.org/lena-marsh-bees">
</head><body>
<nav><a href="/">Home</a> <a href="/about">About</a> <a href="/shop">Shop</a></nav>
<article>
<h1>Lena Marsh on rooftop bees</h1>
<p>Lena Marsh keeps two hives on the roof of a laundrette in Leeds. We met her in April.</p>
<p><strong>Why did you start keeping bees on a roof?</strong></p>
<p>Because of the window boxes on my street. They fed a whole row of houses all summer.</p>
<p>And I wanted to see <em>who</em> was visiting them every morning.</p>
<p><b>What about the <a href="/honey">honey</a>?</b></p>
<p>Lime blossom, mostly. It sets hard by <b>October</b>, and the neighbours get a jar each.</p>
</article>
<footer>Copyright Garden Weekly. All rights reserved.</footer>
</body></html>
"""
BOLD_EXCHANGES = [
    [
        "Why did you start keeping bees on a roof?",
        "Because of the window boxes on my street. They fed a whole row of houses all summer."
        "\n\nAnd I wanted to see who was visiting them every morning.",
    ],
    [
        "What about the honey?",
        "Lime blossom, mostly. It sets hard by October, and the neighbours get a jar each.",
    ],
]


def test_interview_page_by_url_with_bold_questions(lena, httpserver: HTTPServer):
    persona, env = lena
    path = "/interviews/lena-marsh-bees.html"
    httpserver.expect_request(path).respond_with_data(BOLD_PAGE, content_type="text/html")
    url = httpserver.url_for(path)  # 127.0.0.1: the source itself, so the fetcher takes it
    result = add(env, url)
    out, saved = written(result, persona)
    assert out.name == "2023-05-06-lena-marsh-bees.json"
    # The introduction before the first question, the title, menu and footer are not in it.
    assert saved["exchanges"] == BOLD_EXCHANGES
    # Date from the page's metadata; the page's author asks; the URL read is recorded.
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert (saved["date"], saved["url"]) == ("2023-05-06", url)
    assert saved["imported"] == {"from": url, "format": "html"}
    asked = words(*(q for q, _ in BOLD_EXCHANGES))
    answered = words(*(a for _, a in BOLD_EXCHANGES))
    assert (asked, answered) == (13, 43)
    assert f"(questions {asked} words, answers {answered} words), 2023-05-06, {url}" in (
        result.stdout
    )


# Layout (b): Q:/A: marks (bold or not), dated in JSON-LD, saved to a file.
QA_PAGE = """<!doctype html>
<html><head><title>Five questions for a beekeeper</title>
<link rel="canonical" href="https://city.example.org/five-questions">
<script type="application/ld+json">
{"@context": "https://schema.org", "@type": "NewsArticle",
 "headline": "Five questions for a beekeeper", "datePublished": "2022-11-15"}
</script>
</head><body><div class="post">
<p>We talked to the beekeeper on a grey morning in November, over tea.</p>
<p><strong>Q:</strong> How many hives do you keep these days?</p>
<p><strong>A:</strong> Two, on the roof of the laundrette on Mill Street.</p>
<p>The second one came from a swarm I caught in a hedge.</p>
<p>Q: Do the neighbours mind the bees at all?</p>
<p>A: They get honey at Christmas, so no, nobody minds.</p>
</div></body></html>
"""
QA_EXCHANGES = [
    [
        "How many hives do you keep these days?",
        "Two, on the roof of the laundrette on Mill Street.\n\n"
        "The second one came from a swarm I caught in a hedge.",
    ],
    [
        "Do the neighbours mind the bees at all?",
        "They get honey at Christmas, so no, nobody minds.",
    ],
]


def test_saved_interview_page_with_q_and_a_marks(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "Five Questions.html"
    source.write_text(QA_PAGE)
    # The page names no interviewer and has no author: the flag is required.
    refused = add(env, str(source))
    assert str(source) in one_line_error(refused) and "--interviewer" in refused.stderr
    assert not (persona / "transcripts" / "2022-11-15-five-questions.json").exists()

    result = add(env, str(source), "--interviewer", "Sam Lee")
    out, saved = written(result, persona)
    assert out.name == "2022-11-15-five-questions.json"
    assert saved["exchanges"] == QA_EXCHANGES
    assert saved["participants"] == {"q": "Sam Lee", "a": TARGET}
    # From a file, the page's canonical link is its url.
    assert (saved["date"], saved["url"]) == (
        "2022-11-15",
        "https://city.example.org/five-questions",
    )
    asked = words(*(q for q, _ in QA_EXCHANGES))
    answered = words(*(a for _, a in QA_EXCHANGES))
    assert f"(questions {asked} words, answers {answered} words)" in result.stdout
    assert f"speakers Sam Lee (q), {TARGET} (a)" in result.stdout


def test_plain_text_with_q_and_a_marks(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "market-chat.txt"
    source.write_text(
        "Q: Why the Saturday market?\n"
        "A: Because people ask where the honey comes from.\n\n"
        "And I can point at the roof.\n\n"
        "Q. What does a jar cost?\n\n"
        "A. Nine pounds, and every penny goes into frames.\n"
    )
    result = add(env, str(source), "--interviewer", "Ada Flint", "--date", "2023-06-01")
    _, saved = written(result, persona)
    assert saved["exchanges"] == [
        [
            "Why the Saturday market?",
            "Because people ask where the honey comes from.\n\nAnd I can point at the roof.",
        ],
        ["What does a jar cost?", "Nine pounds, and every penny goes into frames."],
    ]
    assert saved["participants"] == {"q": "Ada Flint", "a": TARGET}
    assert saved["imported"] == {"from": "market-chat.txt", "format": "text"}
    assert "(questions 9 words, answers 23 words)" in result.stdout


def test_plain_text_with_names_as_before(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "chat.txt"
    source.write_text(
        "Jo Park: Welcome. Why bees?\n\nLena Marsh: Because of the window boxes.\n\n"
        "They feed a whole street.\n\nNote: this one I mean.\n\n"
        "Jo Park: And bread?\n\nLena Marsh: Gerald, always.\n"
    )
    result = add(env, str(source), "--date", "2023-03-03")  # Jo Park asks: the one other name
    out, saved = written(result, persona)
    assert out.name == "2023-03-03-chat.json"
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    # A single "Note:" inside an answer is not a speaker.
    assert saved["exchanges"] == [
        [
            "Welcome. Why bees?",
            "Because of the window boxes.\n\nThey feed a whole street.\n\nNote: this one I mean.",
        ],
        ["And bread?", "Gerald, always."],
    ]


def test_refusals_leave_the_persona_as_it_was(lena, tmp_path):
    persona, env = lena
    before = listing(persona)
    source = tmp_path / "roof.vtt"
    source.write_text(VTT)

    # Captions carry no date.
    refused = add(env, str(source))
    assert str(source) in one_line_error(refused) and "--date" in refused.stderr
    bad_date = add(env, str(source), "--date", "April 2023")
    assert "--date" in one_line_error(bad_date)

    # Bad files: one line naming the file, exit 2.
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Jo Park: Caf\xe9?\n".encode("latin-1"))
    empty = tmp_path / "empty.vtt"
    empty.write_text("  \n")
    no_cues = tmp_path / "no-cues.vtt"
    no_cues.write_text("WEBVTT\n\nNOTE nothing said yet\n")
    unlabelled = tmp_path / "unlabelled.txt"
    unlabelled.write_text("Why bees?\n\nBecause of the window boxes.\n")
    nobody_answers = tmp_path / "nobody.txt"
    nobody_answers.write_text("Jo Park: Why bees?\n\nJo Park: Really, why?\n")
    for bad, problem in [
        (latin, "not UTF-8 text"),
        (empty, "empty"),
        (no_cues, "no cues"),
        (unlabelled, "names no speaker"),
        (nobody_answers, f"no speaker is '{TARGET}'"),
        (tmp_path / "absent.srt", "no such file"),
    ]:
        line = one_line_error(add(env, str(bad), "--date", "2023-01-01", "--interviewer", "Jo"))
        assert line.startswith(f"raft: error: {bad}: ") and problem in line, line
    assert listing(persona) == before

    # Never overwrites: the same import again is refused and the first file kept.
    out, first = written(add(env, str(source), "--date", "2023-04-02"), persona)
    source.write_text(VTT.replace("He is nine years old.", "He is ten years old."))
    again = add(env, str(source), "--date", "2023-04-02")
    assert "already exists" in one_line_error(again) and str(out) in again.stderr
    assert json.loads(out.read_text()) == first

    # The held-out interview, brought in again as text, is refused and nothing is left.
    before = listing(persona)
    held = INTERVIEWS[HELD_OUT]
    text = tmp_path / "podcast.txt"
    text.write_text("\n\n".join(f"Mo Okafor: {q}\n\n{TARGET}: {a}" for q, a in held["exchanges"]))
    collision = add(env, str(text), "--date", "2023-01-10")
    line = one_line_error(collision)  # bad input: exit 2, naming it
    assert line.startswith(f"raft: error: {text} repeats most of ")
    assert "a held-out interview must not be trained on" in line
    assert listing(persona) == before


UNLABELLED = """Welcome to the show. Why did you start keeping bees on the roof of a laundrette?

Because of the window boxes on my street. They fed a whole row of houses every summer, and I \
wanted to see who was visiting them. The laundrette owner said yes on the first day I asked.

And what about your sourdough starter?

Gerald is nine years old now. Forty hours from flour to loaf, and I give a jar of him to \
anyone who asks, as long as they give one away too.
"""


def test_assign_speakers_previews_then_writes_with_yes(lena, tmp_path):
    """The real SmolLM2 labels the paragraphs: a preview first, the file only with --yes, and
    the second run's labels come from the cache."""
    persona, env = lena
    source = tmp_path / "show.txt"
    source.write_text(UNLABELLED)
    args = [str(source), "--assign-speakers", "--interviewer", "Jo Park", "--date", "2024-02-02"]
    before = listing(persona)
    preview = add(env, *args)
    assert preview.returncode == 0, preview.stderr
    assert listing(persona) == before  # nothing written
    out = persona / "transcripts" / "2024-02-02-show.json"
    assert f"nothing written; re-run with --yes to write {out}" in preview.stdout
    assert re.search(r": [1-9]\d* model calls?\n", preview.stdout), preview.stdout
    assert "1. Q: " in preview.stdout and "transcript:add lena: preview:" in preview.stdout

    result = add(env, *args, "--yes")
    assert ": 0 model calls" in result.stdout  # the same labels, from the cache
    assert written(result, persona)[0] == out
    saved = json.loads(out.read_text())
    assert saved["participants"] == {"q": "Jo Park", "a": TARGET}
    assert saved["imported"]["labelled_by"] and saved["imported"]["prompts"]["assign_speakers"]
    # Whichever side the model gave each paragraph, the exchanges are the source's paragraphs.
    paragraphs = [p.strip() for p in UNLABELLED.split("\n\n")]
    texts = [t for pair in saved["exchanges"] for t in pair]
    assert texts and all(part in paragraphs for t in texts for part in t.split("\n\n"))
    [found] = [line for line in preview.stdout.splitlines() if "preview: " in line]
    assert f"{found.split('preview: ')[1]} -> {out}" in result.stdout


def test_scrub_replaces_personal_data_before_anything_is_written(lena, tmp_path):
    persona, env = lena
    config = persona / "persona.toml"
    config.write_text(config.read_text() + 'blocked_words = ["Mill Street"]\n')
    source = tmp_path / "letters.txt"
    source.write_text(
        "Jo Park: Where can readers reach you?\n\n"
        "Lena Marsh: Write to lena.marsh@example.com or ring +44 20 7946 0958.\n\n"
        "Jo Park: And the hives?\n\nLena Marsh: Still on the roof above Mill Street.\n"
    )
    result = add(env, str(source), "--date", "2023-07-07", "--scrub")
    out, saved = written(result, persona)
    assert saved["exchanges"] == [
        ["Where can readers reach you?", "Write to [email] or ring [phone]."],
        ["And the hives?", "Still on the roof above [blocked]."],
    ]
    text = out.read_text()
    assert not any(s in text for s in ("lena.marsh@", "7946", "Mill Street"))
    assert saved["imported"]["scrubbed"] == {"email": 1, "phone": 1, "blocked": 1}
    assert "scrubbed lena: 1 e-mail address, 1 phone number, 1 blocked word replaced" in (
        result.stdout
    )
    assert "scrub = true" in config.read_text()  # later imports and fetches scrub too


@pytest.mark.parametrize(
    "name,text,found",
    [
        ("talk.vtt", "Jo Park: not captions at all", "vtt"),  # a known suffix decides
        ("talk.txt", VTT, "vtt"),
        ("talk.captions", SRT, "srt"),
        ("page.txt", BOLD_PAGE, "html"),
        ("talk", json.dumps(INTERVIEWS[HELD_OUT]), "json"),
        ("talk.md", "Jo Park: Why bees?\n\nLena Marsh: Window boxes.", "text"),
        ("talk.txt", "<3 bees\n\nQ: Why?", "text"),
    ],
)
def test_formats_are_detected_by_suffix_then_content(tmp_path, name, text, found):
    from raft.interviews.read import detect_format, load_source

    path = tmp_path / name
    path.write_text(text)
    assert detect_format(load_source(str(path))) == found


def test_format_flag_forces_the_reader(lena, tmp_path):
    persona, env = lena
    source = tmp_path / "notes.html"  # named like a page, but it is labelled text
    source.write_text("Jo Park: Why bees?\n\nLena Marsh: Window boxes.\n")
    result = add(env, str(source), "--format", "text", "--date", "2023-08-08")
    _, saved = written(result, persona)
    assert saved["exchanges"] == [["Why bees?", "Window boxes."]]
    assert saved["imported"]["format"] == "text"
