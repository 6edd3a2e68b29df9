"""Speaker turns, the common shape of every interview reader, and the one rule that pairs
them into (question, answer) exchanges."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from raft.errors import UsageError

QUESTION, ANSWER = "Q", "A"  # the labels of text marked by role rather than by name


@dataclass(frozen=True)
class Turn:
    speaker: str  # as the source names them ("Jo Park"), QUESTION/ANSWER, or "" if unnamed
    text: str


def is_target(speaker: str, target: str) -> bool:
    return speaker == ANSWER or speaker.strip().casefold() == target.strip().casefold()


def pair_turns(turns: list[Turn], target: str) -> list[list[str]]:
    """[question, answer] pairs: what the target says answers; what anyone else says (one
    interviewer or several) asks. An unnamed turn continues the speaker before it, and a
    side's consecutive turns merge into one paragraph each. Talk before the first question
    is dropped, as is a question left unanswered at the end."""
    sides: list[tuple[str, list[str]]] = []  # ("q" | "a", its paragraphs, joined once below)
    side = None
    for turn in turns:
        text = turn.text.strip()
        if turn.speaker:
            side = "a" if is_target(turn.speaker, target) else "q"
        if side is None:
            raise UsageError("the first turn names no speaker: label it, or use --assign-speakers")
        if not text:
            continue
        if sides and sides[-1][0] == side:
            sides[-1][1].append(text)
        else:
            sides.append((side, [text]))
    while sides and sides[0][0] == "a":
        sides.pop(0)
    texts = ["\n\n".join(paragraphs) for _, paragraphs in sides]
    pairs = [[q, a] for q, a in zip(texts[::2], texts[1::2], strict=False)]
    if not pairs:
        raise UsageError(f"no exchanges found: nothing {target!r} says answers a question")
    return pairs


def speakers(turns: list[Turn]) -> list[str]:
    """The named speakers, in order of first appearance."""
    seen: dict[str, None] = {}
    for turn in turns:
        if turn.speaker and turn.speaker not in (QUESTION, ANSWER):
            seen.setdefault(turn.speaker, None)
    return list(seen)


# A leading role mark ("Q:", "A.", "Question:") or speaker name ("Jo Park:", ">> JO PARK:").
_ROLE = re.compile(r"(Q|A|Question|Answer)\s*(?::\s*|\.(?:\s+|$))(.*)", re.S)
# Possessive (`*+`, `?+`): the spaces around a name are taken once, never given back, so a
# line of ">>" and a hundred thousand spaces is one scan, not one per split of the spaces.
_NAMED = re.compile(r"(?:>>\s*+)?+([^:\n]{1,60}?)\s*+:(?:\s+(.*)|\s*$)", re.S)
_NAME_WORD = re.compile(r"[^\W\d_][\w'’.-]*")
_PARTICLES = {"de", "da", "di", "del", "der", "van", "von", "le", "la", "du", "bin", "al", "el"}


def looks_like_name(label: str) -> bool:
    """One to four words, each capitalised (or a particle such as "van"), no digits."""
    words = label.split()
    if not 1 <= len(words) <= 4 or not all(_NAME_WORD.fullmatch(w) for w in words):
        return False
    return words[0][0].isupper() and all(w[0].isupper() or w in _PARTICLES for w in words)


def split_label(text: str, known: set[str] = frozenset()) -> tuple[str, str]:
    """(speaker, rest) for text that starts with a role mark (QUESTION or ANSWER) or a
    `Name:` label whose name looks like a person's or is one of `known`; ("", text)
    otherwise."""
    text = text.strip()
    if match := _ROLE.fullmatch(text):
        return (QUESTION if match[1].startswith("Q") else ANSWER), match[2].strip()
    if match := _NAMED.fullmatch(text):
        name = " ".join(match[1].split())
        if looks_like_name(name) or name.casefold() in {k.casefold() for k in known}:
            return name, (match[2] or "").strip()
    return "", text


def is_full_name(label: str) -> bool:
    """A name of two to four words ("Dan Ott"): a speaker even when it labels one line."""
    return len(label.split()) >= 2 and looks_like_name(label)


# A `Name:` label inside a line, after a sentence ends: "… my co-host, Dan. Dan Ott: Yo."
# Name words hold no "." (so "Yes. Dan Ott" is never one name), and every run is taken
# possessively, so a search is one scan from each sentence end.
_WORD = r"[^\W\d_][\w'’-]*+"
_INLINE = re.compile(rf"[.?!…][\"”’')\]]*+\s++((?:{_WORD}[ \t]++){{0,3}}{_WORD})[ \t]*+:(?=\s|$)")


def split_inline(text: str, speaker_of: Callable[[str], str]) -> list[tuple[str, str]]:
    """(speaker, text) parts of `text`: the first is ("", …), whoever spoke before; each
    `Name:` after a sentence end that `speaker_of` maps to a speaker ("" if it is none)
    starts another."""
    parts: list[tuple[str, str]] = []
    speaker, start = "", 0
    for match in _INLINE.finditer(text):
        if found := speaker_of(" ".join(match[1].split())):
            parts.append((speaker, text[start : match.start(1)].strip()))
            speaker, start = found, match.end()
    parts.append((speaker, text[start:].strip()))
    return parts


class Names:
    """The speakers a file names, each spelled as the file first labels them, looked up
    regardless of case ("JO PARK:" at a line's start, "Jo Park:" inside one)."""

    def __init__(self, labels: list[str], accepted: set[str], known: set[str], full: bool):
        self.spelled = {label.casefold(): label for label in reversed(labels) if label in accepted}
        for name in known:
            if name:
                self.spelled.setdefault(name.casefold(), name)
        self.full = full  # whether a full name (is_full_name) is a speaker the first time

    def speaker(self, label: str) -> str:
        """The speaker a label names, or ""."""
        if found := self.spelled.get(label.casefold()):
            return found
        if self.full and is_full_name(label):
            self.spelled[label.casefold()] = label
            return label
        return ""


def accepted_names(labels: list[str], known: set[str]) -> set[str]:
    """The shape-found labels taken as speakers: role marks, the names in `known` (the target,
    the interviewer, the label that opens a text), and any other name that labels at least
    two turns. A single "Note:" in an answer is not a speaker."""
    folded = {name.casefold() for name in known if name}
    seen: dict[str, int] = {}
    for label in labels:
        if label:
            seen[label] = seen.get(label, 0) + 1
    return {
        label
        for label, count in seen.items()
        if label in (QUESTION, ANSWER) or label.casefold() in folded or count >= 2
    }
