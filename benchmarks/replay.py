"""Replaying one long interview as `ratf run` does: each question in order, its prompt the
earlier exchanges that fit a small budget, answered by SmolLM2 in-process (llama.cpp), with
old exchanges dropped one at a time (block=1, the rule before `history_block`) against four
at a time (block=4): the KV cache of the previous prompt only helps while the start holds."""

from __future__ import annotations

import os
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks.common import SEED, Result, paragraph

if TYPE_CHECKING:
    from raft.backends.llm import CachedLLM
    from raft.conversation import Budget, Exchange

# 20 rather than more: a block=1 reply past the budget costs ~7 s on 2 cores, and each side
# runs twice, which keeps the stage near 4-5 minutes.
EXCHANGES = 20
QUICK_EXCHANGES = 8
# Small enough that the history overflows early (answers are ~130 cl100k tokens): from
# question 8 of 20 in full, question 3 of 8 in quick.
BUDGET = (1536, 256)
QUICK_BUDGET = (768, 256)
N_CTX = 8192  # SmolLM2's context, and llama.cpp's here (RAFT_N_CTX's default)
REPLY_TOKENS = 48
BLOCKS = (1, 4)  # raw (before), then raft's default `history_block`
GOAL_SPEED = 1.5
GOAL_EVALUATED = 0.5


@dataclass
class Side:
    """What one block size cost: wall time per pass, tokens summed over the passes."""

    block: int
    passes: list[float] = field(default_factory=list)  # wall seconds of each pass
    replies: int = 0
    prompt: int = 0  # prompt tokens sent (SmolLM2's tokenizer)
    cached: int = 0  # of which the KV cache of the previous call held
    completion: int = 0
    carried: list[int] = field(default_factory=list)  # history exchanges each prompt carried
    dropped: int = 0  # most earlier exchanges a prompt left out
    longest: int = 0  # longest prompt, SmolLM2 tokens

    @property
    def per_minute(self) -> float:
        # The fastest pass: load from other processes on the machine only ever adds time.
        return self.replies / len(self.passes) / min(self.passes) * 60

    @property
    def evaluated(self) -> float:
        return (self.prompt - self.cached) / self.replies

    def describe(self) -> str:
        return (
            f"block={self.block}: {self.prompt / self.replies:.0f} prompt tokens sent per "
            f"reply, {self.cached / self.prompt:.0%} of them from the KV cache, "
            f"{self.evaluated:.0f} evaluated; {statistics.mean(self.carried):.1f} earlier "
            f"exchanges carried on average (up to {self.dropped} dropped); "
            f"{self.completion / self.replies:.0f} reply tokens per reply; passes of "
            + ", ".join(f"{s:.0f}" for s in self.passes)
            + " s"
        )


def interview(exchanges: int) -> list[Exchange]:
    from raft.conversation import Exchange

    rng = random.Random(SEED)
    return [
        Exchange(paragraph(rng, 1).rstrip(".!?") + "?", paragraph(rng, 8)) for _ in range(exchanges)
    ]


def replay(side: Side, history: list[Exchange], budget: Budget, llm: CachedLLM) -> None:
    """One pass over the interview, from an empty KV cache, added to `side`."""
    from raft.conversation import render, system_prompt

    system = system_prompt("Hollis Penwarden", "Jo Park", "2023-05-15")
    llm.inner.llama.reset()  # the model is shared: start without the other side's KV cache
    start = time.perf_counter()
    for i, turn in enumerate(history):
        rendered = render(system, history[:i], turn.question, [], [budget], block=side.block)
        before = llm.usage
        llm.complete(rendered.messages, max_tokens=REPLY_TOKENS, temperature=0.0, seed=0)
        side.longest = max(side.longest, llm.usage.prompt - before.prompt)
        side.carried.append(len(rendered.history))
        side.dropped = max(side.dropped, rendered.dropped)
    side.passes.append(time.perf_counter() - start)
    side.replies += llm.usage.calls
    side.prompt += llm.usage.prompt
    side.cached += llm.usage.cached
    side.completion += llm.usage.completion


def run(quick: bool) -> list[Result]:
    from raft.backends.llm import CachedLLM, LlamaCppLLM
    from raft.backends.models import smollm2_gguf
    from raft.conversation import Budget

    exchanges = QUICK_EXCHANGES if quick else EXCHANGES
    budget = Budget(*(QUICK_BUDGET if quick else BUDGET))
    history = interview(exchanges)
    load = os.getloadavg()[0]
    sides = {block: Side(block) for block in BLOCKS}
    # Load the model and warm llama.cpp up outside the timings.
    CachedLLM(LlamaCppLLM(smollm2_gguf())).complete(
        [{"role": "user", "content": "Hi"}], max_tokens=8
    )
    # Alternated, so that neither side always runs first or last.
    order = BLOCKS if quick else BLOCKS + BLOCKS[::-1]
    for block in order:
        # A fresh wrapper with no call cache: every reply reaches the model.
        replay(sides[block], history, budget, CachedLLM(LlamaCppLLM(smollm2_gguf())))
    for side in sides.values():
        if side.dropped == 0:
            raise RuntimeError(f"block={side.block}: the budget never dropped history")
        if side.longest + REPLY_TOKENS > N_CTX:
            raise RuntimeError(f"block={side.block}: a prompt of {side.longest} tokens")

    raw, new = sides[1], sides[4]
    speed = new.per_minute / raw.per_minute
    evaluated = new.evaluated / raw.evaluated
    setup = (
        f"one synthetic interview of {exchanges} exchanges (~8-sentence answers), each "
        f"question answered in order by SmolLM2-135M Q4_1 in-process (llama.cpp, n_ctx "
        f"{N_CTX}, greedy, {REPLY_TOKENS} tokens at most), prompts rendered as `ratf run` "
        f"does (no memories) under Budget({budget.limit}, {budget.reserve}); raw: block=1, "
        "old exchanges dropped one at a time as before `history_block`. Each pass starts "
        f"from an empty KV cache; passes in the order {', '.join(map(str, order))}, the "
        f"fastest of each side counted (1-min load average at the start: {load:.1f}). "
    )
    return [
        Result(
            "replay",
            f"replies/min, {exchanges} exchanges, history_block=4",
            new.per_minute,
            raw.per_minute,
            speed,
            f">= {GOAL_SPEED}x replies/min",
            speed >= GOAL_SPEED,
            setup + raw.describe() + ". " + new.describe() + ".",
        ),
        Result(
            "replay",
            "prompt tokens evaluated per reply",
            new.evaluated,
            raw.evaluated,
            evaluated,
            f"<= {GOAL_EVALUATED}x",
            evaluated <= GOAL_EVALUATED,
            "evaluated: prompt tokens llama.cpp processed afresh (sent minus the prefix the "
            "previous call left in its KV cache); block=4 prompts also carry fewer earlier "
            "exchanges on average, which makes them shorter too.",
        ),
    ]
