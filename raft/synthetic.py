"""Synthetic questions, real answers (instruction back-translation) for `ft:gen --synthetic N`.

Passages of the author's own writing become answers; an LLM writes only the question an
interviewer would have asked, through one or more lenses. The answer is never rewritten.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from raft.backends.embed import CachedEmbedder
from raft.backends.llm import CachedLLM, StructuredOutputError, complete_json
from raft.memories import REASON
from raft.prompts import prompt_hashes, quote, render

LENSES = ("neutral", "skeptic", "layperson", "follow_up")
PROMPTS = ("select_passage", "synthetic_question", *(f"lens_{lens}" for lens in LENSES))
SELF_CONTAINED = {
    "type": "object",
    "properties": {"self_contained": {"type": "boolean"}, "reason": REASON},
    "required": ["self_contained", "reason"],
    "additionalProperties": False,
}
_BOILERPLATE = re.compile(
    r"\b(subscribe|unsubscribe|thanks for reading|share this (post|essay)|sign up|"
    r"newsletter|all rights reserved|cookie policy|leave a comment)\b",
    re.I,
)
_LINK = re.compile(r"https?://|\]\(")
# "Lena Marsh, interviewer, asked: ..." -> the question itself
_SPEAKER_PREFIX = re.compile(r"^[^?]{0,80}?\b(asked|asks|asking)\b[^:?]*:\s*(?=[\"\u201c])", re.I)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+.*$", re.M)


@dataclass(frozen=True)
class SyntheticSettings:
    n: int = 0  # passages to turn into samples, at most
    lenses: tuple[str, ...] = ("neutral",)
    ratio: float = 0.5  # largest share of synthetic samples in the training set
    speech: bool = False  # drop headings and link lines from answers
    min_words: int = 30
    max_words: int = 350
    duplicate_similarity: float = 0.92  # questions closer than this are near-duplicates
    seed: int = 0


def rejection(text: str, settings: SyntheticSettings) -> str | None:
    """Why a passage fails the cheap filters, or None when it passes."""
    words = len(text.split())
    if words < settings.min_words:
        return "too short"
    if words > settings.max_words:
        return "too long"
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and sum(bool(_LINK.search(line)) for line in lines) * 2 >= len(lines):
        return "mostly links"
    if _BOILERPLATE.search(text):
        return "boilerplate"
    return None


def speech_answer(text: str) -> str:
    """Light normalisation for speech: no headings, no lines that are links."""
    text = _HEADING.sub("", text)
    lines = [line for line in text.splitlines() if not _LINK.search(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean_question(text: str) -> str:
    """The first line that reads as a question, without labels or quotes."""
    for line in text.strip().splitlines():
        line = re.sub(r"^(question|q|interviewer)\s*[:\-]\s*", "", line.strip(), flags=re.I)
        line = _SPEAKER_PREFIX.sub("", line).strip("\"' ")
        if line:
            end = line.find("?")
            return line[: end + 1] if end >= 0 else line
    return ""


class BackTranslator:
    """Select passages and write the questions they answer."""

    def __init__(self, llm: CachedLLM, embedder: CachedEmbedder, target: str, settings):
        self.llm = llm
        self.embedder = embedder
        self.target = target
        self.settings = settings

    def made(self) -> dict[str, Any]:
        return {"prompts": prompt_hashes(*PROMPTS), "synthetic": vars(self.settings)}

    def candidates(self, chunks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Passages that pass the cheap filters, in a seeded order."""
        passing = [c for c in chunks if rejection(c["text"], self.settings) is None]
        random.Random(self.settings.seed).shuffle(passing)
        return passing

    def is_self_contained(self, chunk: dict[str, Any]) -> bool:
        prompt = render(
            "select_passage", target=self.target, passage=quote("passage", chunk["text"])
        )
        messages = [{"role": "user", "content": prompt}]
        try:
            verdict = complete_json(self.llm, messages, SELF_CONTAINED, max_tokens=120)
        except StructuredOutputError:
            return False
        return bool(verdict["self_contained"])

    def question(self, chunk: dict[str, Any], lens: str) -> str:
        prompt = render(
            "synthetic_question",
            target=self.target,
            lens=render(f"lens_{lens}", target=self.target),
            passage=quote("passage", chunk["text"]),
        )
        reply = self.llm.complete([{"role": "user", "content": prompt}], max_tokens=60)
        return clean_question(reply)

    def select(self, chunks: Iterable[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
        """Up to `limit` passages that pass the filters and the LLM judge."""
        chosen = []
        for chunk in self.candidates(chunks):
            if len(chosen) >= limit:
                break
            if self.is_self_contained(chunk):
                chosen.append(chunk)
        return chosen

    def pairs(self, passages: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str, str]]:
        """(passage, lens, question) for every lens, near-duplicate questions removed."""
        pairs = [
            (p, lens, self.question(p, lens)) for p in passages for lens in self.settings.lenses
        ]
        pairs = [pair for pair in pairs if pair[2]]
        if not pairs:
            return []
        vectors = self.embedder.embed([question for _, _, question in pairs])
        kept: list[int] = []
        for i in range(len(pairs)):
            if all(
                float(np.dot(vectors[i], vectors[j])) < self.settings.duplicate_similarity
                for j in kept
            ):
                kept.append(i)
        return [pairs[i] for i in kept]
