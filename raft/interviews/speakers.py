"""Who speaks each paragraph of an interview that names no one: the interviewer or the target,
as an LLM reads it, a chunk of paragraphs per structured call."""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from raft.backends.tokens import count_tokens
from raft.interviews.turns import ANSWER, QUESTION, Turn
from raft.prompts import parse_json, quote, render

PROMPT = "assign_speakers"  # the template; record prompt_hash(PROMPT) with what it labelled
CHUNK_PARAGRAPHS = 12  # paragraphs labelled by one call at most
CHUNK_TOKENS = 1500  # and their tokens at most, so a small context holds the prompt
LABELS = {"q": QUESTION, "a": ANSWER}


def labels_schema(n: int) -> dict[str, Any]:
    """Exactly one label per paragraph (llama.cpp turns minItems/maxItems into its grammar)."""
    labels = {"type": "array", "items": {"enum": list(LABELS)}, "minItems": n, "maxItems": n}
    return {
        "type": "object",
        "properties": {"labels": labels},
        "required": ["labels"],
        "additionalProperties": False,
    }


def chunk_paragraphs(
    paragraphs: list[str], max_paragraphs: int = CHUNK_PARAGRAPHS, max_tokens: int = CHUNK_TOKENS
) -> list[list[str]]:
    """Consecutive paragraphs in chunks of at most `max_paragraphs` and `max_tokens` tokens;
    a paragraph longer than that alone is a chunk of its own."""
    chunks: list[list[str]] = []
    tokens = 0
    for paragraph in paragraphs:
        n = count_tokens(paragraph)
        if not chunks or len(chunks[-1]) >= max_paragraphs or tokens + n > max_tokens:
            chunks.append([])
            tokens = 0
        chunks[-1].append(paragraph)
        tokens += n
    return chunks


def _before(previous: str | None, target: str, interviewer: str) -> str:
    if previous is None:
        return "These are the first paragraphs of the interview."
    who = target if previous == "a" else interviewer
    return f"The paragraph just before these was spoken by {who}."


class Labeller(Protocol):
    """What labelling needs of a model: raft.backends.llm.CachedLLM is one. The readers take
    it from their caller, so they need no LLM backend of their own."""

    model_id: str

    def complete(self, messages: list[dict[str, str]], **params: Any) -> str: ...


def _label(
    llm: Labeller, chunk: list[str], previous: str | None, target: str, interviewer: str
) -> list[str] | None:
    """One label ("q" or "a") per paragraph of the chunk, or None when the reply does not
    parse or has the wrong number of labels."""
    import jsonschema

    prompt = render(
        PROMPT,
        target=target,
        interviewer=interviewer,
        before=_before(previous, target, interviewer),
        paragraphs="\n\n".join(
            f"{n}. {quote('paragraph', text)}" for n, text in enumerate(chunk, 1)
        ),
        count=str(len(chunk)),
    )
    schema = labels_schema(len(chunk))
    reply = llm.complete(
        [{"role": "user", "content": prompt}],
        schema=schema,
        temperature=0.0,
        max_tokens=32 + 6 * len(chunk),
        seed=0,
    )
    try:
        return parse_json(reply, schema)["labels"]
    except (ValueError, jsonschema.ValidationError):
        return None


def assign_speakers(
    paragraphs: list[str],
    llm: Labeller,
    target: str,
    interviewer: str,
    *,
    max_paragraphs: int = CHUNK_PARAGRAPHS,
    max_tokens: int = CHUNK_TOKENS,
    counts: Counter[str] | None = None,
) -> list[Turn]:
    """Each paragraph as the interviewer's question (QUESTION) or the target's answer (ANSWER).

    One structured call per chunk, told who spoke the paragraph before it. A chunk whose
    reply fails is asked again a paragraph at a time; a paragraph that still fails takes the
    label of the one before it (the first: a question). `counts` gets "chunks", "retried"
    (chunks asked again) and "guessed" (paragraphs labelled by that rule)."""
    counts = Counter() if counts is None else counts
    labels: list[str] = []
    for chunk in chunk_paragraphs(paragraphs, max_paragraphs, max_tokens):
        counts["chunks"] += 1
        previous = labels[-1] if labels else None
        found = _label(llm, chunk, previous, target, interviewer)
        if found is None:
            counts["retried"] += 1
            found = []
            for paragraph in chunk:
                before = found[-1] if found else previous
                one = _label(llm, [paragraph], before, target, interviewer)
                if one is None:
                    counts["guessed"] += 1
                    one = [before or "q"]
                found += one
        labels += found
    return [Turn(LABELS[label], text) for label, text in zip(labels, paragraphs, strict=True)]
