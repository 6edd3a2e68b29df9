"""`ratf score --judge SPEC`: an LLM judge, used two ways.

- Pairwise: each replica against the baseline, shown with the real answer; every pair is
  judged twice with the positions swapped, so a judge that favours "A" cancels out.
- Discrimination: the real answer hidden among the replicas' replies; how often the judge
  finds it. Chance is 1/N; the closer to chance, the better the replicas imitate.
"""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from raft.backends.llm import StructuredOutputError, complete_json
from raft.console import Tally
from raft.memories import REASON
from raft.paths import Persona
from raft.prompts import prompt_hashes, quote, render
from raft.workspace import Workspace
from ratf.items import BenchItem

if TYPE_CHECKING:
    from rich.progress import Progress

PAIRWISE = {
    "type": "object",
    "properties": {"closer": {"type": "string", "enum": ["A", "B"]}, "reason": REASON},
    "required": ["closer", "reason"],
}
JUDGE_TOKENS = 120


def discriminate_schema(n: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "real": {"type": "integer", "minimum": 1, "maximum": n},
            "reason": REASON,
        },
        "required": ["real", "reason"],
    }


def ask(llm: Any, prompt: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return complete_json(
            llm,
            [{"role": "user", "content": prompt}],
            schema,
            temperature=0.0,
            max_tokens=JUDGE_TOKENS,
            seed=0,
        )
    except StructuredOutputError:
        return None  # counted as no preference


def pairwise(llm: Any, item: BenchItem, reply: str, baseline: str) -> float:
    """1 if the judge prefers the replica in both orders, 0.5 if split, 0 if never."""
    wins = 0.0
    for first, second, replica_is in ((reply, baseline, "A"), (baseline, reply, "B")):
        prompt = render(
            "ratf_pairwise",
            target=item.target,
            question=quote("question", item.question),
            answer=quote("real_answer", item.answer),
            reply_a=quote("reply_a", first),
            reply_b=quote("reply_b", second),
        )
        verdict = ask(llm, prompt, PAIRWISE)
        wins += 0.5 if verdict is None else float(verdict["closer"] == replica_is)
    return wins / 2


def discriminate(llm: Any, item: BenchItem, replies: list[str]) -> float:
    """1 if the judge picks the real answer out of the replies (in a seeded order), else 0."""
    candidates = [item.answer, *replies]
    order = list(range(len(candidates)))
    random.Random(item.id).shuffle(order)
    numbered = "\n\n".join(quote(f"reply_{n}", candidates[i]) for n, i in enumerate(order, 1))
    prompt = render(
        "ratf_discriminate",
        target=item.target,
        question=quote("question", item.question),
        replies=numbered,
    )
    verdict = ask(llm, prompt, discriminate_schema(len(candidates)))
    return float(verdict is not None and order[verdict["real"] - 1] == 0)


def judge_run(
    persona: Persona,
    spec: str,
    items: list[BenchItem],
    replies: dict[str, dict[str, str]],
    baseline: str | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Pairwise win rates against the baseline and the discrimination rate, with intervals."""
    from ratf.stats import bootstrap_mean

    llm = Workspace.open(persona, judge=spec).llm("judge")
    others = [name for name in replies if name != baseline]
    tally = Tally(progress, "judge", len(items) * (len(others) * 2 + 1))
    wins: dict[str, list[float]] = {name: [] for name in others}
    picked = []
    for item in items:
        for name in others if baseline else []:
            wins[name].append(
                pairwise(llm, item, replies[name][item.id], replies[baseline][item.id])
            )
            tally.advance(2)
        picked.append(discriminate(llm, item, [replies[n][item.id] for n in replies]))
        tally.advance()
    return {
        "judge": llm.model_id,
        "prompts": prompt_hashes("ratf_pairwise", "ratf_discriminate"),
        "pairwise": {
            name: {"win_rate": asdict(bootstrap_mean(values))}
            for name, values in wins.items()
            if values
        },
        "discrimination": {
            "picked_real": asdict(bootstrap_mean(picked)),
            "chance": 1 / (len(replies) + 1),
        },
    }
