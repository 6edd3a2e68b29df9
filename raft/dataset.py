"""Fine-tuning samples: packing earlier conversation into a token budget, and the formats
(OpenAI chat fine-tuning, TRL messages, ShareGPT) written from the generic raft.jsonl.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from raft.backends.tokens import count_tokens

Message = dict[str, Any]
ROLES = {"system", "user", "assistant"}
# Per-message overhead of chat formatting, as in OpenAI's token-counting guidance.
MESSAGE_OVERHEAD = 4


def count_message_tokens(messages: list[Message]) -> int:
    return sum(count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages) + 2


@dataclass
class Packed:
    messages: list[Message]  # system, history turns, the question (with memories), the answer
    history: list[int]  # indices of the earlier exchanges included, oldest first
    dropped: int  # earlier exchanges left out for the budget
    n_tokens: int


def pack_sample(system: str, turns: list[tuple[str, str]], index: int, max_tokens: int) -> Packed:
    """Sample for exchange `index`: as many earlier turns as fit, the newest kept first.

    `turns` are (user turn with memory slot, real answer) for every exchange of the interview.
    """
    head = [{"role": "system", "content": system}]
    tail = [
        {"role": "user", "content": turns[index][0]},
        {"role": "assistant", "content": turns[index][1]},
    ]
    used = count_message_tokens(head + tail)
    history: list[int] = []
    for earlier in range(index - 1, -1, -1):
        cost = sum(count_tokens(t) + MESSAGE_OVERHEAD for t in turns[earlier])
        if used + cost > max_tokens:
            break
        used += cost
        history.insert(0, earlier)
    middle = [
        {"role": role, "content": text}
        for i in history
        for role, text in zip(("user", "assistant"), turns[i], strict=True)
    ]
    return Packed(head + middle + tail, history, index - len(history), used)


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
