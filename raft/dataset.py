"""Fine-tuning samples (`finetune/raft.jsonl` rows) and the formats written from them:
OpenAI chat fine-tuning, TRL messages, ShareGPT. Samples are rendered by
`raft.conversation.render`, the function inference uses too.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from raft.conversation import Message, count_message_tokens
from raft.memory import Memory

ROLES = {"system", "user", "assistant"}


@dataclass
class Sample:
    """One fine-tuning sample: a line of `finetune/raft.jsonl`."""

    id: str
    interview: str
    interviewer: str
    target: str
    date: str
    url: str
    index: int
    question: str
    answer: str
    memories: list[Memory]  # every memory retrieved, with both verdicts
    kept: list[str]  # chunk ids in the question's memory slot
    sources: list[str] = field(default_factory=list)  # essays the answer draws on, if known
    distractors: bool = False
    # the slot also holds the sentences nearest the real answer (raft.oracle; training only)
    oracle: bool = False
    synthetic: bool = False
    lens: str = ""
    source_chunk: str = ""
    messages: list[Message] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    history_dropped: int = 0
    n_tokens: int = 0
    made: dict[str, Any] = field(default_factory=dict)

    def retrieved(self) -> list[Memory]:
        """The memories the question recalled, in retrieval order: not the oracle's."""
        return [m for m in self.memories if not m.oracle]

    def useful(self) -> list[Memory]:
        """Pass-1 memories: what the replica recalls for this question live."""
        return [m for m in self.retrieved() if m.useful]

    def kept_memories(self) -> list[Memory]:
        by_id = {m.chunk_id: m for m in self.memories}
        return [by_id[chunk_id] for chunk_id in self.kept]

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        if not self.synthetic:
            del row["lens"], row["source_chunk"]
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["memories"] = [Memory.from_row(m) for m in row.get("memories", [])]
        return cls(**values)


def to_openai(messages: list[Message]) -> dict[str, Any]:
    """OpenAI chat fine-tuning: only the final answer is a target (`weight: 0` on history)."""
    last = len(messages) - 1
    out = []
    for i, m in enumerate(messages):
        row = {"role": m["role"], "content": m["content"]}
        if m["role"] == "assistant":
            row["weight"] = 1 if i == last else 0
        out.append(row)
    return {"messages": out}


def to_trl(messages: list[Message]) -> dict[str, Any]:
    """TRL's conversational format; the local trainer masks all but the final answer."""
    return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}


SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def to_sharegpt(messages: list[Message]) -> dict[str, Any]:
    return {
        "conversations": [
            {"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages
        ]
    }


def is_validation(sample_id: str, fraction: float) -> bool:
    """A stable split: the same sample always lands on the same side."""
    digest = int(hashlib.sha256(sample_id.encode("utf-8")).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < fraction


@dataclass
class OpenAICheck:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_openai(samples: list[dict[str, Any]], token_limit: int) -> OpenAICheck:
    """The checks of OpenAI's data-preparation guidance for chat fine-tuning files."""
    check = OpenAICheck()
    errors: Counter[str] = Counter()
    for sample in samples:
        messages = sample.get("messages")
        if not isinstance(messages, list) or not messages:
            errors["missing messages list"] += 1
            continue
        for m in messages:
            if set(m) - {"role", "content", "weight", "name"}:
                errors["unrecognised message key"] += 1
            if m.get("role") not in ROLES:
                errors["unrecognised role"] += 1
            if not isinstance(m.get("content"), str) or not m["content"]:
                errors["missing or empty content"] += 1
            if "weight" in m and m["weight"] not in (0, 1):
                errors["weight other than 0 or 1"] += 1
        if not any(m.get("role") == "assistant" for m in messages):
            errors["no assistant message"] += 1
        if count_message_tokens(messages) > token_limit:
            errors[f"over the {token_limit}-token limit"] += 1
    check.errors = [f"{n} sample(s): {what}" for what, n in sorted(errors.items())]
    if len(samples) < 10:
        check.warnings.append(
            f"only {len(samples)} training samples; OpenAI requires at least 10 for a job"
        )
    return check
