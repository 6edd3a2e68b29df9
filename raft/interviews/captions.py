"""WebVTT and SRT captions (read by webvtt-py) as speaker turns; cue timing is dropped."""

from __future__ import annotations

import html
import io
import re

from raft.errors import UsageError
from raft.interviews.turns import (
    Names,
    Turn,
    accepted_names,
    is_full_name,
    looks_like_name,
    split_inline,
    split_label,
)

# The bracketed spans below exclude their own opening mark, so a line of ten thousand "["
# with no "]" is one linear scan, not one scan per "[".
_SOUND = re.compile(r"\[[^\[\]]*\]|\([^()]*\)|♪+")  # [Music], (laughs): not spoken words
_SSA = re.compile(r"\{\\[^{}]*\}")  # {\an8}: SubStation position codes some SRT files carry
_TAG = re.compile(r"<[^<>]*>")  # <c>, <i>, <00:00:01.200>: webvtt-py's `<.*?>`, in linear time


def _clean(line: str) -> str:
    text = html.unescape(_TAG.sub("", _SSA.sub("", line)))
    return " ".join(text.split())


# A whole cue timing line ("00:00:01,000 --> 00:00:02,500", settings after it allowed), and
# what is left of one cut short: digits, ":", ",", ".", "-", ">".
_TIMING = re.compile(
    r"[ \t]*(?:\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}[ \t]+-->[ \t]+(?:\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}"
    r"(?:[ \t][^\n]*)?"
)
_TIMING_PART = re.compile(r"[\d:,. \t>-]+")


def _without_cut_cue(name: str, text: str) -> str:
    """The captions without a last cue that the file cuts off (it ends inside the timing line,
    or before any text), with a warning: webvtt-py drops such a cue without a word, or reads
    the stump of an SRT cue as words of the one before."""
    from raft.console import warn

    body = text.rstrip()
    blank = body.rfind("\n\n")  # a block ends at an empty line, as webvtt-py reads it
    start = blank + 2 if blank >= 0 else 0
    lines = body[start:].split("\n")
    if lines[0].startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
        return text
    timing = next((n for n, line in enumerate(lines) if "-->" in line), None)
    if timing is None:
        cut = len(lines) <= 2 and bool(_TIMING_PART.fullmatch(lines[-1]))
        problem = "the file ends inside its timing line"
    elif not _TIMING.fullmatch(lines[timing]):
        cut, problem = True, "the file ends inside its timing line"
    else:
        cut = not any(line.strip() for line in lines[timing + 1 :])
        problem = "the file ends before its text"
    if not cut:
        return text
    warn(f"{name}: the last cue is cut off ({problem}); the file may be truncated")
    return body[:start]


def _segments(voice: str, line: str) -> list[tuple[str, bool, str]]:
    """(voice, changes speaker, text) parts of one cleaned line: a leading "- " (a dialogue
    dash) or each ">>" marks a new speaker."""
    dash = line.startswith("- ")
    first, *changes = (line[2:] if dash else line).split(">>")
    parts = [(voice, dash, first.strip())] + [(voice, True, part.strip()) for part in changes]
    return [part for part in parts if part[2]]


def _lines(name: str, text: str, fmt: str) -> list[tuple[str, bool, str]]:
    """(voice, changes speaker, text) per spoken line of the cues, in order. A cue's first line
    that repeats the previous cue's last line (rolling auto-captions) is dropped."""
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    text = _without_cut_cue(name, text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n"))
    try:
        captions = webvtt.from_buffer(io.StringIO(text), format=fmt).captions
    except (MalformedFileError, MalformedCaptionError) as exc:
        raise UsageError(f"{name}: not a readable {fmt.upper()} file ({exc})") from None
    if not captions:
        raise UsageError(f"{name}: no cues")
    from webvtt.models import Caption

    lines: list[tuple[str, bool, str]] = []
    previous = None  # the previous cue's last line: (voice, text)
    for caption in captions:
        cue = []
        voice = ""
        for raw in caption.lines:
            if match := Caption.VOICE_SPAN_PATTERN.match(raw.lstrip()):
                voice = " ".join(match[1].split())
            if cleaned := _clean(raw):
                cue.append((voice, cleaned))
        if not cue:
            continue
        last = cue[-1]
        if previous and cue[0][1] == previous[1] and cue[0][0] in ("", previous[0]):
            cue = cue[1:]
        previous = last
        for voice, line in cue:
            lines += _segments(voice, line)
    return lines


def caption_turns(name: str, text: str, fmt: str, known: set[str] = frozenset()) -> list[Turn]:
    """Speaker turns of WebVTT (`fmt` "vtt") or SRT ("srt") captions, named or not.

    The speaker comes from a `<v Name>` voice tag, or a `NAME:` (or `>> NAME:`) label at the
    start of a line or after a sentence ends inside one; a line without one continues the
    speaker before it, and consecutive lines of one speaker join into one turn. A `>>` or a
    dialogue dash (`- `) with no name starts an unnamed turn (speaker ""). Markup, timestamps
    inside cues and sound descriptions ([Music]) are dropped."""
    lines = _lines(name, text, fmt)
    labelled = [split_label(line, known) if not voice else ("", line) for voice, _, line in lines]
    found = [label for label, _ in labelled]
    # After ">>" (a speaker change) any name-like label counts; elsewhere, accepted_names, or
    # a full name ("Dan Ott:") that labels a single line.
    opening = found[0] if found else ""  # who speaks first: nobody's continuation
    accepted = accepted_names(found, {*known, opening})
    accepted |= {
        label
        for (_, change, _), label in zip(lines, found, strict=True)
        if label and (is_full_name(label) or change and looks_like_name(label))
    }
    names = Names(found, accepted, known, full=True)
    turns: list[tuple[str, list[str]]] = []  # (speaker, their lines, joined once below)
    speaker = ""
    for (voice, change, line), (label, rest) in zip(lines, labelled, strict=True):
        new = change  # an unnamed change of speaker is a turn of its own
        if voice:
            speaker = voice
        elif named := names.speaker(label):
            speaker, line = named, rest
        elif change:
            speaker = ""
        for part_speaker, part in split_inline(line, names.speaker):
            speaker = part_speaker or speaker
            part = " ".join(_SOUND.sub(" ", part).split())
            if not part:
                continue
            if turns and turns[-1][0] == speaker and not new:
                turns[-1][1].append(part)
            else:
                turns.append((speaker, [part]))
            new = False
    return [Turn(speaker, " ".join(lines)) for speaker, lines in turns]


def read_captions(name: str, text: str, fmt: str, known: set[str] = frozenset()) -> list[Turn]:
    """The named speaker turns of captions (caption_turns), from the first named one on."""
    turns = caption_turns(name, text, fmt, known)
    first = next((n for n, turn in enumerate(turns) if turn.speaker), None)
    if first is None and len(turns) > 1:
        raise UsageError(
            f"{name}: the speaker changes (>> or - ) but no cue names who speaks; "
            "pass --assign-speakers to label the turns"
        )
    if first is None:
        raise UsageError(f"{name}: no cue names its speaker (a <v Name> tag or a NAME: label)")
    return turns[first:]
