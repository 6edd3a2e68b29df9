"""Plain-text interviews: `Name: text` or `Q:` / `A:` paragraphs, or paragraphs that name no
one (for --assign-speakers)."""

from __future__ import annotations

import re

from raft.interviews.turns import (
    ANSWER,
    QUESTION,
    Names,
    Turn,
    accepted_names,
    split_inline,
    split_label,
)


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs (separated by blank lines), stripped, empty ones dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def read_text(text: str, known: set[str] = frozenset()) -> list[Turn]:
    """Speaker turns of labelled text. A paragraph, or a line inside one, that starts with a
    role mark (`Q:`, `A.`) or an accepted `Name:` label starts a turn, as does an accepted
    label after a sentence ends inside a line ("… Dan. Dan Ott: Yo."); anything else continues
    the turn before it; where only questions are marked, the paragraphs after one answer it.
    `known` names, and the label that opens the text, always count (see accepted_names)."""
    blocks = [p.split("\n") for p in paragraphs(text)]
    found = [[split_label(line, known) for line in lines] for lines in blocks]
    opening = found[0][0][0] if found else ""  # who speaks first: nobody's continuation
    seen = [label for labels in found for label, _ in labels]
    names = Names(seen, accepted_names(seen, {*known, opening}), known, full=False)
    turns: list[Turn] = []
    for lines, labels in zip(blocks, found, strict=True):
        speaker, body = "", []
        for line, (label, rest) in zip(lines, labels, strict=True):
            if named := names.speaker(label):
                line = rest
                if body or speaker:
                    turns.append(Turn(speaker, "\n".join(body).strip()))
                speaker, body = named, []
            for part_speaker, part in split_inline(line, names.speaker):
                if part_speaker:
                    turns.append(Turn(speaker, "\n".join(body).strip()))
                    speaker, body = part_speaker, []
                body.append(part)
        turns.append(Turn(speaker, "\n".join(body).strip()))
    if {turn.speaker for turn in turns} == {QUESTION, ""}:
        # Only questions are marked: the paragraphs after one answer it.
        turns = [turn if turn.speaker else Turn(ANSWER, turn.text) for turn in turns]
    return turns
