"""Retrieve -> rephrase -> judge -> memory slot: the one path shared by ft:gen, chat/serve
and bench:setup, so the replica is tested and served on exactly what it was trained on.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from raft.backends.llm import CachedLLM, StructuredOutputError, complete_json
from raft.prompts import prompt_hashes, render
from raft.store import Hit, Store

PROMPTS = ("system", "memory_slot", "rephrase", "judge_question", "judge_answer")


# A verdict's reason is capped, so that the JSON always closes within the token budget:
# small models otherwise ramble in it until the reply is cut off mid-string.
REASON = {"type": "string", "maxLength": 200}


def _verdict_schema(field: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field: {"type": "boolean"}, "reason": REASON},
        "required": [field, "reason"],
        "additionalProperties": False,
    }


USEFUL = _verdict_schema("useful")
CONSISTENT = _verdict_schema("consistent")


@dataclass
class Memory:
    chunk_id: str
    doc_id: str
    title: str
    link: str
    date: str
    text: str
    distance: float
    kind: str = "chunk"
    rephrased: str = ""
    useful: bool | None = None  # pass 1: judged from the question alone
    useful_reason: str = ""
    consistent: bool | None = None  # pass 2: judged against the real answer (training only)
    consistent_reason: str = ""
    error: str = ""  # why a step produced nothing usable

    @classmethod
    def from_hit(cls, hit: Hit) -> Memory:
        return cls(
            hit.id, hit.doc_id, hit.title, hit.link, hit.date, hit.text, hit.distance, hit.kind
        )

    def row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecallSettings:
    k: int = 6
    rephrase_tokens: int = 80  # one or two sentences
    judge_tokens: int = 120
    temperature: float = 0.0
    seed: int = 0


_PREAMBLE = re.compile(r"^(sure|okay|ok|here is|here's|certainly)\b[^\n:]*:\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SENTENCES = 2  # what the rephrase prompt asks for; small models run on and repeat


def clean_rephrasing(text: str) -> str:
    """At most two distinct sentences, without a chatty preamble or wrapping quotes."""
    text = " ".join(_PREAMBLE.sub("", text.strip()).split())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    sentences = list(dict.fromkeys(s for s in _SENTENCE_END.split(text) if s))
    return " ".join(sentences[:MAX_SENTENCES])


class Recall:
    """Memories for a question from the author's earlier writing, judged as at inference."""

    def __init__(
        self, store: Store, llm: CachedLLM, target: str, settings: RecallSettings | None = None
    ):
        self.store = store
        self.llm = llm
        self.target = target
        self.settings = settings or RecallSettings()

    def made(self) -> dict[str, Any]:
        """How memories were made, for every file that records them."""
        return {
            "generator": self.llm.model_id,
            "embedder": self.store.embedder.model_id,
            "prompts": prompt_hashes(*PROMPTS),
            "recall": asdict(self.settings),
        }

    def retrieve(
        self, question: str, before: str | None, context: str = "", exclude_doc: str | None = None
    ) -> list[Memory]:
        """Top-k chunks dated strictly before `before`, one per document part, no repeats."""
        query = f"{context}\n\n{question}" if context else question
        hits = self.store.query(
            query, k=self.settings.k * 2, before_date=before, exclude_doc=exclude_doc
        )
        memories: list[Memory] = []
        seen: set[str] = set()
        for hit in hits:
            key = " ".join(hit.text.split())
            if hit.id in seen or key in seen:
                continue
            seen.update((hit.id, key))
            memories.append(Memory.from_hit(hit))
            if len(memories) == self.settings.k:
                break
        return memories

    def _chat(self, prompt: str, max_tokens: int) -> str:
        s = self.settings
        messages = [{"role": "user", "content": prompt}]
        return self.llm.complete(
            messages, temperature=s.temperature, max_tokens=max_tokens, seed=s.seed, stop=["\n\n"]
        )

    def _judge(self, prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        messages = [{"role": "user", "content": prompt}]
        return complete_json(
            self.llm,
            messages,
            schema,
            temperature=s.temperature,
            max_tokens=s.judge_tokens,
            seed=s.seed,
        )

    def rephrase(self, question: str, memory: Memory) -> None:
        prompt = render(
            "rephrase",
            target=self.target,
            question=question,
            date=memory.date or "an unknown date",
            passage=memory.text,
        )
        memory.rephrased = clean_rephrasing(self._chat(prompt, self.settings.rephrase_tokens))
        if not memory.rephrased:
            memory.error = "empty rephrasing"

    def judge_question(self, question: str, memory: Memory) -> None:
        """Pass 1: useful from the question alone; the exact judgement made at inference."""
        if memory.error:
            memory.useful = False
            return
        prompt = render(
            "judge_question", target=self.target, question=question, memory=memory.rephrased
        )
        try:
            verdict = self._judge(prompt, USEFUL)
        except StructuredOutputError as exc:
            memory.useful, memory.error = False, str(exc)
            return
        memory.useful, memory.useful_reason = verdict["useful"], verdict["reason"].strip()

    def judge_answer(self, question: str, answer: str, memory: Memory) -> None:
        """Pass 2 (training only): consistent with and relevant to the real answer."""
        prompt = render(
            "judge_answer",
            target=self.target,
            question=question,
            answer=answer,
            memory=memory.rephrased,
        )
        try:
            verdict = self._judge(prompt, CONSISTENT)
        except StructuredOutputError as exc:
            memory.consistent, memory.error = False, str(exc)
            return
        memory.consistent = verdict["consistent"]
        memory.consistent_reason = verdict["reason"].strip()

    def _each(self, work, memories: list[Memory]) -> None:
        with ThreadPoolExecutor(max_workers=max(1, self.llm.concurrency)) as pool:
            list(pool.map(work, memories))

    def recall(
        self, question: str, before: str | None, context: str = "", exclude_doc: str | None = None
    ) -> list[Memory]:
        """Retrieve, rephrase and judge from the question alone, as the replica does live."""
        memories = self.retrieve(question, before, context, exclude_doc)

        def work(memory: Memory) -> None:
            self.rephrase(question, memory)
            self.judge_question(question, memory)

        self._each(work, memories)
        return memories

    def check_against_answer(self, question: str, answer: str, memories: list[Memory]) -> None:
        """Pass 2 for the memories that passed pass 1."""
        self._each(
            lambda m: self.judge_answer(question, answer, m), [m for m in memories if m.useful]
        )


def memory_slot(memories: list[Memory]) -> str:
    """The block that carries kept memories, identical at training and inference."""
    lines = "\n".join(f"- ({m.date or 'undated'}) {m.rephrased}" for m in memories)
    return render("memory_slot", memories=lines)


def user_turn(question: str, memories: list[Memory]) -> str:
    """The interviewer's question, then the memory slot when any memory was kept."""
    return f"{question}\n\n{memory_slot(memories)}" if memories else question


def system_prompt(target: str, interviewer: str, date: str) -> str:
    return render("system", target=target, interviewer=interviewer, date=date)
