"""WebVTT and SRT captions (read by webvtt-py) as speaker turns; cue timing is dropped."""

from __future__ import annotations

import html
import io
import re

from raft.errors import UsageError
from raft.interviews.turns import Turn, accepted_names, looks_like_name, split_label

# The bracketed spans below exclude their own opening mark, so a line of ten thousand "["
# with no "]" is one linear scan, not one scan per "[".
_SOUND = re.compile(r"\[[^\[\]]*\]|\([^()]*\)|♪+")  # [Music], (laughs): not spoken words
_SSA = re.compile(r"\{\\[^{}]*\}")  # {\an8}: SubStation position codes some SRT files carry
_TAG = re.compile(r"<[^<>]*>")  # <c>, <i>, <00:00:01.200>: webvtt-py's `<.*?>`, in linear time


def _clean(line: str) -> str:
    text = html.unescape(_TAG.sub("", _SSA.sub("", line)))
    return " ".join(text.split())


def _lines(name: str, text: str, fmt: str) -> list[tuple[str, bool, str]]:
    """(voice, changes speaker, text) per spoken line of the cues, in order. A cue's first line
    that repeats the previous cue's last line (rolling auto-captions) is dropped."""
    import webvtt
    from webvtt.errors import MalformedCaptionError, MalformedFileError

    try:
        captions = webvtt.from_buffer(io.StringIO(text.lstrip("\ufeff")), format=fmt).captions
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
            cleaned = _clean(raw)
            turn = cleaned.startswith(">>") or cleaned.startswith("- ")
            cleaned = cleaned.lstrip(">-").strip() if turn else cleaned
            if cleaned:
                cue.append((voice, turn, cleaned))
        if not cue:
            continue
        last = cue[-1][0], cue[-1][2]
        if previous and cue[0][2] == previous[1] and cue[0][0] in ("", previous[0]):
            cue = cue[1:]
        previous = last
        lines += cue
    return lines


def read_captions(name: str, text: str, fmt: str, known: set[str] = frozenset()) -> list[Turn]:
    """Speaker turns of WebVTT (`fmt` "vtt") or SRT ("srt") captions.

    The speaker comes from a `<v Name>` voice tag, or a `NAME:` (or `>> NAME:`) label at the
    start of a line; a line without one continues the speaker before it, and consecutive
    lines of one speaker join into one turn. Markup, timestamps inside cues and sound
    descriptions ([Music]) are dropped, as is talk before the first named speaker."""
    lines = _lines(name, text, fmt)
    labelled = [split_label(line, known) if not voice else ("", line) for voice, _, line in lines]
    # After ">>" (a speaker change) any name-like label counts; elsewhere, accepted_names.
    opening = labelled[0][0] if labelled else ""  # who speaks first: nobody's continuation
    names = accepted_names([label for label, _ in labelled], {*known, opening})
    names |= {
        label
        for (_, turn, _), (label, _) in zip(lines, labelled, strict=True)
        if turn and label and looks_like_name(label)
    }
    turns: list[tuple[str, list[str]]] = []  # (speaker, their lines, joined once below)
    speaker = ""
    for (voice, _, line), (label, rest) in zip(lines, labelled, strict=True):
        if voice:
            speaker = voice
        elif label in names:
            speaker, line = label, rest
        line = " ".join(_SOUND.sub(" ", line).split())
        if not speaker or not line:
            continue
        if turns and turns[-1][0] == speaker:
            turns[-1][1].append(line)
        else:
            turns.append((speaker, [line]))
    if not turns:
        raise UsageError(f"{name}: no cue names its speaker (a <v Name> tag or a NAME: label)")
    return [Turn(speaker, " ".join(lines)) for speaker, lines in turns]
