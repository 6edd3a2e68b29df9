"""Retrieve -> rephrase -> judge: the one path shared by ft:gen, chat/serve and bench:setup,
so the replica is tested and served on exactly what it was trained on. The memory slot
itself is rendered by `raft.conversation`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from raft.backends.llm import CachedLLM, StructuredOutputError, complete_json
from raft.concurrency import bounded_map
from raft.conversation import ConversationSpec
from raft.prompts import quote, render
from raft.store import Hit, Store

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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Memory:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


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
    """Memories for a question from the author's earlier writing, judged as at inference.

    Built from a conversation spec, so training and inference retrieve, rephrase and judge
    the same way: same `k`, same use of the previous answer, same generation settings.
    """

    def __init__(self, store: Store, llm: CachedLLM, spec: ConversationSpec):
        self.store = store
        self.llm = llm
        self.spec = spec
        self.target = spec.target

    def retrieve(
        self,
        question: str,
        before: str | None,
        previous_answer: str = "",
        exclude_doc: str | None = None,
    ) -> list[Memory]:
        """Top-k chunks dated strictly before `before`, one per document part, no repeats.

        With the spec's `context`, the previous answer joins the query."""
        k = self.spec.k
        query = (
            f"{previous_answer}\n\n{question}"
            if self.spec.context and previous_answer
            else question
        )
        hits = self.store.query(query, k=k * 2, before_date=before, exclude_doc=exclude_doc)
        memories: list[Memory] = []
        seen: set[str] = set()
        for hit in hits:
            key = " ".join(hit.text.split())
            if hit.id in seen or key in seen:
                continue
            seen.update((hit.id, key))
            memories.append(Memory.from_hit(hit))
            if len(memories) == k:
                break
        return memories

    def _chat(self, prompt: str, max_tokens: int) -> str:
        s = self.spec
        messages = [{"role": "user", "content": prompt}]
        return self.llm.complete(
            messages, temperature=s.temperature, max_tokens=max_tokens, seed=s.seed, stop=["\n\n"]
        )

    def _judge(self, prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
        s = self.spec
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
            question=quote("question", question),
            date=memory.date or "an unknown date",
            passage=quote("passage", memory.text),
        )
        memory.rephrased = clean_rephrasing(self._chat(prompt, self.spec.rephrase_tokens))
        if not memory.rephrased:
            memory.error = "empty rephrasing"

    def judge_question(self, question: str, memory: Memory) -> None:
        """Pass 1: useful from the question alone; the exact judgement made at inference."""
        if memory.error:
            memory.useful = False
            return
        prompt = render(
            "judge_question",
            target=self.target,
            question=quote("question", question),
            memory=quote("memory", memory.rephrased),
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
            question=quote("question", question),
            answer=quote("answer", answer),
            memory=quote("memory", memory.rephrased),
        )
        try:
            verdict = self._judge(prompt, CONSISTENT)
        except StructuredOutputError as exc:
            memory.consistent, memory.error = False, str(exc)
            return
        memory.consistent = verdict["consistent"]
        memory.consistent_reason = verdict["reason"].strip()

    def recall(
        self,
        question: str,
        before: str | None,
        previous_answer: str = "",
        exclude_doc: str | None = None,
    ) -> list[Memory]:
        """Retrieve, rephrase and judge from the question alone, as the replica does live."""
        memories = self.retrieve(question, before, previous_answer, exclude_doc)

        def work(memory: Memory) -> None:
            self.rephrase(question, memory)
            self.judge_question(question, memory)

        bounded_map(work, memories, self.llm.concurrency)
        return memories

    def check_against_answer(self, question: str, answer: str, memories: list[Memory]) -> None:
        """Pass 2 for the memories that passed pass 1."""
        useful = [m for m in memories if m.useful]
        bounded_map(lambda m: self.judge_answer(question, answer, m), useful, self.llm.concurrency)
