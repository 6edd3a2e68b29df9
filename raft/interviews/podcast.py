"""Podcasting 2.0 transcripts (the `podcast:transcript` files podcast hosts publish) as speaker
turns: the JSON of `segments`, each with its `speaker` and `body`, and the HTML of a
`<cite>Name:</cite>` (then an optional `<time>`) before each `<p>`. Their SRT and WebVTT files
(`Name:` at the start of a cue, or `<v Name>`) are captions, read by raft.interviews.captions.

Told apart by content, whatever the file's name or content type: a JSON object with a
"segments" list and no "participants" (raft's own transcript has those), and HTML in which a
speaker's <cite> ("Name:", or with a <time> after it) comes before a <p>, at least twice (a
page that cites one source is still a page)."""

from __future__ import annotations

import json
import re
from itertools import islice

from raft.errors import UsageError
from raft.interviews.turns import Turn

PODCAST_FORMATS = ("podcast-json", "podcast-html")
# A <cite> that names a speaker ("Name:", or a <time> after it), then a <p>. Each span stops
# at the next "<", so a page of ten thousand unclosed "<cite" is one scan, not one per "<cite".
_TIME = r"<time\b[^<>]*>[^<]*</time>\s*"
_CITED = re.compile(
    rf"<cite\b[^<>]*>(?:[^<]{{0,200}}:\s*</cite>\s*(?:{_TIME})?|[^<]{{1,200}}</cite>\s*{_TIME})<p\b",
    re.I,
)
# A segment that starts like this joins the text before it without a space: punctuation and
# the pieces word-by-word transcripts split off ("it" "'s", "do" "n't").
_CLINGS = re.compile(r"[.,;:!?%)\]}…”]|['’](?:s|t|d|m|re|ve|ll)\b|n['’]t\b", re.I)
_OPENS = tuple("([{“‘¿¡")  # after these, no space


def dialect(text: str, fmt: str) -> str:
    """`fmt`, or "podcast-json" / "podcast-html" when the JSON or HTML is a Podcasting 2.0
    transcript."""
    if fmt == "json" and _segments(text) is not None:
        return "podcast-json"
    if fmt == "html" and len(list(islice(_CITED.finditer(text), 2))) == 2:
        return "podcast-html"
    return fmt


def read_podcast(name: str, text: str, fmt: str) -> list[Turn]:
    """Speaker turns of a Podcasting 2.0 transcript (`fmt` "podcast-json" or "podcast-html");
    talk before the first named speaker is dropped."""
    if fmt == "podcast-json":
        turns, missing = _json_turns(name, _segments(text) or []), "segment"
    else:
        turns, missing = _html_turns(text), "<cite> before a paragraph"
    if not turns:
        raise UsageError(f"{name}: no {missing} names its speaker")
    return turns


def _segments(text: str) -> list | None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # left for the transcript reader to report
        return None
    if isinstance(data, dict) and isinstance(data.get("segments"), list):
        return None if "participants" in data else data["segments"]
    return None


def _json_turns(name: str, segments: list) -> list[Turn]:
    """Consecutive segments of one speaker (often a word or a phrase each) joined into a turn;
    a segment with no speaker continues the one before."""
    turns: list[tuple[str, list[str]]] = []
    speaker = ""
    for number, segment in enumerate(segments, 1):
        body = segment.get("body") if isinstance(segment, dict) else None
        who = segment.get("speaker") if isinstance(segment, dict) else None
        if not isinstance(body, str) or not isinstance(who, str | None):
            raise UsageError(
                f'{name}: segment {number} is not an object with a "body" string '
                '(and a "speaker" string)'
            )
        speaker = " ".join((who or "").split()) or speaker
        if not speaker or not body.strip():
            continue
        if turns and turns[-1][0] == speaker:
            turns[-1][1].append(body)
        else:
            turns.append((speaker, [body]))
    return [Turn(speaker, _joined(bodies)) for speaker, bodies in turns]


def _joined(bodies: list[str]) -> str:
    """The segments' text as it reads: a space between words, none before punctuation or a
    split-off "'s", none after an opening bracket; the segments' own spacing kept."""
    pieces: list[str] = []
    for body in bodies:
        before = pieces[-1] if pieces else ""
        glued = not before or before[-1].isspace() or body[0].isspace()
        if not glued and not _CLINGS.match(body) and not before.endswith(_OPENS):
            pieces.append(" ")
        pieces.append(body)
    return " ".join("".join(pieces).split())


def _html_turns(text: str) -> list[Turn]:
    """Each <p> is a paragraph of the speaker the last <cite> named ("Alban :" is Alban)."""
    import lxml.html

    # lxml refuses a str that declares its encoding; the text is already decoded.
    document = lxml.html.document_fromstring(re.sub(r"^\s*<\?xml[^>]*>", "", text))
    for br in document.iter("br"):
        br.tail = "\n" + (br.tail or "")  # words either side of a <br> stay apart
    turns: list[Turn] = []
    speaker = ""
    for element in document.iter("cite", "p"):
        words = " ".join(element.text_content().split())
        if element.tag == "cite":
            speaker = " ".join(words.rstrip(":").split()) or speaker
        elif speaker and words:
            turns.append(Turn(speaker, words))
    return turns
