"""Batched judging: one call per pass for all memories of a question, a single call for each
memory whose verdict is missing or malformed, and what every call cost in tokens."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raft.backends.cache import Cache
from raft.backends.llm import CachedLLM, LlamaCppLLM, Reply, Usage
from raft.backends.models import smollm2_gguf
from raft.conversation import ConversationSpec
from raft.memories import Recall, batch_verdicts, verdicts_schema
from raft.memory import Memory
from raft.prompts import render

TARGET = "Lena Marsh"
QUESTION = "What do your bees teach you about winter?"
ANSWER = "That a colony is a promise you renew each spring, and that you cannot rush it."
RECOLLECTIONS = [
    "I lost a hive in the cold winter of 2019 and learned to leave them their honey.",
    "Slow bread is a kind of patience I learned from my grandmother.",
    "A colony clusters in winter and the bees take turns at the cold edge.",
    "I moved the hives to the laundrette roof because the window boxes feed them.",
]
_NUMBERED = re.compile(r"Memory (\d+):")
_ASKED = re.compile(r"For memories ([\d, ]+), decide")


def memories() -> list[Memory]:
    out = []
    for n, text in enumerate(RECOLLECTIONS):
        memory = Memory(f"essay:{n}", f"essay-{n}", f"Essay {n}", "", "2020-01-0{n + 1}", text, n)
        memory.rephrased = text
        out.append(memory)
    return out


class PatchyJudge:
    """A real LLM implementation whose batches are patchy: it leaves out memory 2 and gives
    memory 3 a verdict that is no boolean; asked about one memory, it says useful unless the
    memory is about bread. `garble` makes every batch reply unreadable."""

    model_id = "patchy-judge"
    concurrency = 1

    def __init__(self, garble: bool = False):
        self.garble = garble
        self.prompts: list[str] = []

    def complete(self, messages, *, schema=None, **params):
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        if schema["required"] != ["verdicts"]:
            field = schema["required"][0]
            return Reply(json.dumps({field: "bread" not in prompt, "reason": "alone"}), Usage(1))
        if self.garble:
            return Reply('{"verdicts": [{"id": 1, "use', Usage(1))
        item = schema["properties"]["verdicts"]["items"]
        field = item["required"][1]
        verdicts = [
            {"id": n, field: "yes" if n == 3 else n != 4, "reason": f"batch {n}"}
            for n in item["properties"]["id"]["enum"]
            if n != 2
        ]
        return Reply(json.dumps({"verdicts": verdicts}), Usage(1))


def recall_with(model, tmp_path: Path) -> Recall:
    spec = ConversationSpec(target=TARGET, k=4, memory_style="extractive")
    return Recall(None, CachedLLM(model, Cache(tmp_path / "cache.sqlite")), spec)


def test_a_patchy_batch_falls_back_to_single_calls_for_the_memories_it_missed(tmp_path):
    model = PatchyJudge()
    recall = recall_with(model, tmp_path)
    found = memories()
    recall.judge_questions(QUESTION, found)
    # One batch, then memory 2 (left out) and memory 3 (not a boolean) on their own.
    assert recall.llm.calls == 3
    assert [len(_NUMBERED.findall(p)) for p in model.prompts] == [4, 0, 0]
    assert "bread" in model.prompts[1] and "colony clusters" in model.prompts[2]
    assert [(m.useful, m.useful_reason, m.alone) for m in found] == [
        (True, "batch 1", False),
        (False, "alone", True),  # the bread memory, judged alone
        (True, "alone", True),
        (False, "batch 4", False),
    ]

    # Pass 2 asks about the memories useful in pass 1, after the very same opening.
    recall.judge_answers(QUESTION, ANSWER, found)
    batch = model.prompts[3]
    assert _ASKED.search(batch)[1] == "1, 3"
    head = model.prompts[0][: model.prompts[0].index("For each memory")]
    assert batch.startswith(head) and ANSWER in batch[len(head) :]
    # Memory 1 had its verdict; memory 3, left out of this batch too, is judged alone.
    assert recall.llm.calls == 5
    assert [(m.consistent, m.consistent_reason) for m in found] == [
        (True, "batch 1"),
        (None, ""),
        (True, "alone"),
        (None, ""),
    ]

    # Every call is cached: the same judgements again cost nothing.
    again = recall_with(PatchyJudge(), tmp_path)
    repeat = memories()
    again.judge_questions(QUESTION, repeat)
    again.judge_answers(QUESTION, ANSWER, repeat)
    assert again.llm.calls == 0
    assert [m.row() for m in repeat] == [m.row() for m in found]


def test_an_unreadable_batch_judges_every_memory_alone(tmp_path):
    model = PatchyJudge(garble=True)
    recall = recall_with(model, tmp_path)
    found = memories()
    recall.judge_questions(QUESTION, found)
    assert recall.llm.calls == 1 + 4
    assert [m.useful for m in found] == [True, False, True, True]
    assert all(m.alone and m.useful_reason == "alone" for m in found)


def test_gated_memories_are_neither_numbered_nor_judged(tmp_path):
    model = PatchyJudge()
    recall = recall_with(model, tmp_path)
    found = memories()
    found[0].gate = "below_best"
    found[1].rephrased, found[1].error = "", "no sentence to extract"
    recall.judge_questions(QUESTION, found)
    assert _NUMBERED.findall(model.prompts[0]) == ["1", "2"]  # the colony and the roof
    assert "cold winter" not in model.prompts[0] and "bread" not in model.prompts[0]
    assert found[0].useful is False and found[1].useful is False
    # Memory 2 of the batch (the roof) was left out of it, so it was judged alone.
    assert recall.llm.calls == 2 and found[3].alone and not found[2].alone


@pytest.mark.parametrize(
    "reply, ids",
    [
        ('{"verdicts": [{"id": 1, "useful": true, "reason": "r"}]}', {1}),
        # a second verdict for the same memory does not replace the first
        (
            '{"verdicts": [{"id": 2, "useful": false, "reason": "a"}, '
            '{"id": 2, "useful": true, "reason": "b"}]}',
            {2},
        ),
        ('{"verdicts": [{"id": 7, "useful": true, "reason": "not a memory"}]}', set()),
        ('{"verdicts": "none"}', set()),
        ("no JSON at all", set()),
    ],
)
def test_batch_replies_keep_only_well_formed_verdicts(reply, ids):
    verdicts = batch_verdicts(reply, verdicts_schema("useful", [1, 2, 3]))
    assert set(verdicts) == ids
    if 2 in ids:
        assert verdicts[2]["reason"] == "a"


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppLLM:
    model = LlamaCppLLM(smollm2_gguf())
    model.llama.reset()  # the model is loaded once per process: start from an empty KV cache
    return model


def test_smollm2_judges_a_batch_in_one_call_per_pass_and_pass_2_reuses_pass_1s_prompt(
    smollm2, tmp_path
):
    spec = ConversationSpec(target=TARGET, k=4, memory_style="extractive")
    recall = Recall(None, CachedLLM(smollm2, Cache(tmp_path / "cache.sqlite")), spec)
    found = memories()
    recall.judge_questions(QUESTION, found)
    first = recall.llm.usage
    assert first.calls == 1  # llama.cpp's grammar held SmolLM2 to the array schema
    assert all(isinstance(m.useful, bool) and m.useful_reason and not m.alone for m in found)
    assert any(m.useful for m in found)
    recall.judge_answers(QUESTION, ANSWER, found)
    total = recall.llm.usage
    assert total.calls == 2
    assert all(isinstance(m.consistent, bool) for m in found if m.useful)
    # Pass 2's prompt opens with pass 1's question and memories: the KV cache serves all of
    # pass 1's prompt but its closing instructions (and the chat template's end of turn).
    tail = smollm2.llama.tokenize(render("judge_useful", target=TARGET).encode(), add_bos=False)
    cached = total.cached - first.cached
    assert first.prompt - len(tail) - 8 <= cached < first.prompt


def test_token_accounting_follows_llama_cpps_kv_cache(smollm2, tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    llm = CachedLLM(smollm2, cache)
    system = {"role": "system", "content": "You are Lena Marsh. " + " ".join(RECOLLECTIONS)}
    ask = [system, {"role": "user", "content": QUESTION}]
    follow_up = [
        *ask,
        {"role": "assistant", "content": RECOLLECTIONS[0]},
        {"role": "user", "content": "And in spring?"},
    ]
    smollm2.llama.reset()
    llm.complete(ask, max_tokens=8)
    first = llm.usage
    assert first.calls == 1 and first.prompt > 80 and 0 < first.completion <= 8
    assert first.cached == 0  # an empty KV cache: every prompt token evaluated
    llm.complete(follow_up, max_tokens=8)
    prompt, cached = llm.usage.prompt - first.prompt, llm.usage.cached
    # The follow-up extends the first prompt: only what it adds is evaluated.
    assert prompt > first.prompt and cached >= first.prompt - 2
    assert prompt - cached <= prompt - first.prompt + 2

    # Cache hits cost nothing, and what the calls cost is kept in their cache rows.
    again = CachedLLM(smollm2, cache)
    again.complete(ask, max_tokens=8)
    again.complete(follow_up, max_tokens=8)
    assert again.usage == Usage()
    keys = [key for (key,) in cache._db.execute("SELECT key FROM calls WHERE kind = 'chat'")]
    recorded, unrecorded = again.recorded_usage(keys)
    assert (len(keys), unrecorded, recorded.seconds > 0) == (2, 0, True)
    assert recorded.row() | {"seconds": 0} == llm.usage.row() | {"seconds": 0}
