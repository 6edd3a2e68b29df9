"""Extractive memories: the sentences of a retrieved passage nearest to the question, verbatim.

A memory in the `extractive` style is never rewritten: it is one contiguous span of the
author's own text, so a replica learns from their words rather than from a small model's
paraphrase. Markdown is handled only by where a span starts and ends (after list markers,
heading hashes and quote marks; never across a line break), never by editing the text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raft.backends.embed import Embedder

SHORT = 12  # words: a best sentence shorter than this takes its closer neighbour along
MIN_WORDS = 3  # words: a shorter sentence (a dateline, "Anyway.") says nothing to recall
PARAGRAPH_WORDS = 4  # words: a shorter paragraph (a heading, a dateline) recalls nothing

# List markers, heading hashes and quote marks at the start of a line, nested or not.
_BLOCK_MARKER = re.compile(r"(?:[ \t]*(?:#{1,6}[ \t]+|>[ \t]*|[-*+][ \t]+|\d{1,3}[.)][ \t]+))*")
_NOT_PROSE = re.compile(r"^\s*(?:[-*_][ \t]*){3,}$|^\s*\|")  # horizontal rules, table rows
# A sentence ends at . ! ? (or a run of them), with any closing quotes, brackets, emphasis.
_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]*_]*(?=\s|$)")
_CLOSED = re.compile(r"[.!?][\"'\u201d\u2019)\]*_]*$")
_ABBREVIATION = re.compile(
    r"(?:\b(?i:mr|mrs|ms|dr|st|prof|jr|sr|mt|no|vs|etc|e\.g|i\.e|cf)|\b[A-HJ-Z])\.$"
)
_WORD = re.compile(r"[^\W\d_]{2,}|\b[aAI]\b")
_LINK = re.compile(r"!?\[[^\]]*\]\([^)]*\)|https?://\S+|<[^>\s]+>")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    line: int  # the line it sits on: a span never joins two lines
    whole: bool  # starts like a sentence and ends with its punctuation: not cut by a chunk
    prose: bool  # a few words, not mostly links: worth recalling


def paragraphs(text: str) -> list[tuple[int, str]]:
    """The paragraphs of `text` (split at blank lines) of at least PARAGRAPH_WORDS words,
    each as (offset into `text`, the paragraph stripped), in order."""
    found, at = [], 0
    for part in _PARAGRAPH_BREAK.split(text):
        start = text.find(part, at)
        at = start + len(part)
        if len(part.split()) >= PARAGRAPH_WORDS:
            found.append((start, part.strip()))
    return found


def sentences(text: str, start: int = 0) -> list[Sentence]:
    """The sentences of `text` from offset `start` on, as offsets into `text`."""
    found: list[Sentence] = []
    for number, line in enumerate(re.finditer(r"[^\n]+", text)):
        if line.end() <= start or _NOT_PROSE.match(line.group()):
            continue
        begin = max(line.start(), start)
        position = _BLOCK_MARKER.match(text, begin, line.end()).end()
        for end in _END.finditer(text, position, line.end()):
            if _ABBREVIATION.search(text, position, end.start() + 1):
                continue  # "Mrs." or an initial, not the end of a sentence
            found.append(_sentence(text, position, end.end(), number))
            position = end.end()
        found.append(_sentence(text, position, line.end(), number))
    return [s for s in found if s.end > s.start]


def _sentence(text: str, start: int, end: int, line: int) -> Sentence:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    piece = text[start:end]
    whole = bool(piece) and not piece[0].islower() and bool(_CLOSED.search(piece))
    links = sum(len(link) for link in _LINK.findall(piece))
    prose = _words(piece) >= MIN_WORDS and links * 2 < len(piece)
    return Sentence(start, end, line, whole, prose)


def _words(text: str) -> int:
    return len(_WORD.findall(_LINK.sub(" ", text)))


def candidates(found: list[Sentence]) -> list[int]:
    """Indices of the sentences a memory may be: whole prose ones; failing those, any prose
    (a chunk may hold a single cut sentence); failing those, anything with words."""
    for keep in (
        lambda s: s.prose and s.whole,
        lambda s: s.prose,
        lambda s: True,
    ):
        chosen = [n for n, s in enumerate(found) if keep(s)]
        if chosen:
            return chosen
    return []


def choose(text: str, found: list[Sentence], scores: dict[int, float]) -> str:
    """The best-scoring sentence, joined by its closer scored neighbour on the same line when
    it is short; `scores` maps indices of `found` to their similarity to the question."""
    best = max(scores, key=lambda n: scores[n])
    start, end = found[best].start, found[best].end
    if _words(text[start:end]) < SHORT:
        neighbours = [
            n for n in (best - 1, best + 1) if n in scores and found[n].line == found[best].line
        ]
        if neighbours:
            other = found[max(neighbours, key=lambda n: scores[n])]
            start, end = min(start, other.start), max(end, other.end)
    return text[start:end]


def extract(
    question: str,
    texts: Sequence[str],
    embedder: Embedder,
    starts: Sequence[int] | None = None,
) -> list[str]:
    """For each text, the one or two adjacent sentences most similar to the question, as a
    substring of it ("" when it holds no sentence); one embedding call for all of them.
    `starts` gives an offset per text before which no span may begin."""
    starts = list(starts) if starts is not None else [0] * len(texts)
    found = [sentences(text, start) for text, start in zip(texts, starts, strict=True)]
    chosen = [candidates(group) for group in found]
    pieces = [
        text[group[n].start : group[n].end]
        for text, group, indices in zip(texts, found, chosen, strict=True)
        for n in indices
    ]
    if not pieces:
        return [""] * len(texts)
    vectors = embedder.embed([question, *pieces])
    scores = iter((vectors[1:] @ vectors[0]).tolist())
    out: list[str] = []
    for text, group, indices in zip(texts, found, chosen, strict=True):
        by_index = {n: next(scores) for n in indices}
        out.append(choose(text, group, by_index) if by_index else "")
    return out
