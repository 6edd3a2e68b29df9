"""The conversation spec and the one renderer behind training samples, chat, serve and the
benchmark.

A `ConversationSpec` is everything that shaped the training prompts: who the target is, the
generator and embedder that made the memories, `k`, whether retrieval saw the previous
answer, the memory style, the prompt hashes and the token budget. ft:gen writes it into
`finetune/stats.json`, ft:run copies it into each model's registry record, and inference
reads it from there. `render` turns a conversation into messages for training (with the
answer) and for inference (without it): the same function, so the prompt a replica sees is
the training sample minus its answer by construction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from raft.memory import Memory
from raft.paths import Persona
from raft.prompts import prompt_hashes
from raft.prompts import render as render_template

Message = dict[str, Any]
TIKTOKEN = "cl100k_base"
# Per-message overhead of chat formatting, as in OpenAI's token-counting guidance.
MESSAGE_OVERHEAD = 4
PROMPTS = (
    "system",
    "memory_slot",
    "rephrase",
    "judge_question",
    "judge_answer",
    "judge_memories",
    "judge_useful",
    "judge_consistent",
)
# rephrased: an LLM recalls the passage in the first person; extractive: the one or two
# sentences of it nearest to the question, verbatim (raft.extractive), with no LLM call.
MEMORY_STYLES = ("rephrased", "extractive")
DEFAULT_MEMORY_STYLE = "extractive"  # chosen by the fidelity study, docs/fidelity.md
# What one memory is: a retrieved chunk (shown in the memory style) or one of the author's
# paragraphs, shown whole. docs/retrieval.md measured paragraphs making the training answers
# more likely on both personas; "chunk" stays the default until a study re-run flips it.
UNITS = ("chunk", "paragraph")
NO_MEMORIES = "none"  # the plain dataset's style: the same samples, no memory slot


@dataclass(frozen=True)
class Budget:
    """How many tokens a rendered sample may take, counted by one tokenizer.

    `reserve` tokens of `limit` are kept for the answer, so which earlier exchanges a prompt
    carries never depends on the answer: at inference there is none yet.
    """

    limit: int
    reserve: int
    tokenizer: str = TIKTOKEN  # cl100k_base, or a folder holding a Hugging Face tokenizer

    def count(self, messages: list[Message], answer: bool = False) -> int:
        """Tokens of a prompt (`answer=False`: with the assistant header a reply follows)."""
        if self.tokenizer == TIKTOKEN:
            return count_message_tokens(messages)
        tokenizer = hf_tokenizer(self.tokenizer)
        ids = tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=not answer, return_dict=True
        )["input_ids"]
        return len(ids)

    def fits(self, prompt: list[Message]) -> bool:
        return self.count(prompt) + self.reserve <= self.limit


def count_message_tokens(messages: list[Message]) -> int:
    from raft.backends.tokens import count_tokens

    return sum(count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages) + 2


@cache
def hf_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# What a spec row written before these fields existed was made with.
BEFORE_FIELDS: dict[str, Any] = {"judge_batch": False, "skip_below": 0.0, "history_block": 1}


@dataclass(frozen=True)
class ConversationSpec:
    """What shaped the training prompts; inference is built from it, not from today's flags."""

    target: str  # the name prompts give the author
    generator: str = "local"  # backend spec of the model that rephrased and judged memories
    generator_id: str = ""  # the exact model behind that spec when the data was made
    embedder: str = "local"
    embedder_id: str = ""
    k: int = 6
    context: bool = False  # the previous answer joins the retrieval query
    memory_style: str = DEFAULT_MEMORY_STYLE
    unit: str = "chunk"  # one of UNITS; a spec written before the field retrieved chunks
    prompts: dict[str, str] = field(default_factory=lambda: prompt_hashes(*PROMPTS))
    rephrase_tokens: int = 80  # one or two sentences
    judge_tokens: int = 120
    temperature: float = 0.0
    seed: int = 0
    max_tokens: int = 4096  # the budget of one sample, cl100k_base tokens
    reserve: int = 512  # of which kept for the answer
    # One call judges all memories of a question (each pass), instead of one call each.
    judge_batch: bool = True
    # A passage this much (cosine distance) farther from the question than its best hit is
    # never rephrased or judged; 0 judges every one of the k.
    skip_below: float = 0.0
    # Earlier exchanges that do not fit are dropped this many at a time, so that consecutive
    # prompts of one conversation share their start and a prompt cache can reuse it.
    history_block: int = 4
    # Training only (raft.oracle): the chance that a real exchange's memory slot also holds
    # the `oracle_sentences` sentences of earlier writing nearest its real answer.
    oracle_p: float = 0.0
    oracle_sentences: int = 2

    @property
    def budget(self) -> Budget:
        return Budget(self.max_tokens, self.reserve)

    def to_row(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ConversationSpec:
        """A spec as written; a field it lacks was written before the field existed, so it
        takes the behaviour from before then."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**(BEFORE_FIELDS | {k: v for k, v in row.items() if k in names}))

    def differences(self, other: ConversationSpec) -> list[str]:
        """`field: ours -> theirs` for each field that differs."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} -> {getattr(other, f.name)!r}"
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]


def training_spec(persona: Persona, dataset: str = "raft") -> ConversationSpec | None:
    """The spec ft:gen made a dataset's current files with (its `stats.json`)."""
    path = persona.dataset(dataset) / "stats.json"
    if not path.is_file():
        return None
    spec = json.loads(path.read_text(encoding="utf-8")).get("spec")
    return ConversationSpec.from_row(spec) if spec else None


@dataclass
class Exchange:
    """One question of a conversation, with the memories its slot shows and its answer."""

    question: str
    answer: str
    memories: list[Memory] = field(default_factory=list)


@dataclass
class Rendered:
    messages: list[Message]  # system, earlier exchanges, the question with its slot[, answer]
    history: list[int]  # indices of the earlier exchanges carried, oldest first
    dropped: int  # earlier exchanges left out for the budget
    n_tokens: int  # tokens of the messages under the first budget


def system_prompt(target: str, interviewer: str, date: str) -> str:
    return render_template("system", target=target, interviewer=interviewer, date=date)


def memory_slot(memories: list[Memory]) -> str:
    """The block that carries memories, identical at training and inference."""
    lines = "\n".join(f"- ({m.date or 'undated'}) {m.rephrased}" for m in memories)
    return render_template("memory_slot", memories=lines)


def user_turn(question: str, memories: list[Memory]) -> str:
    """The interviewer's question, then the memory slot when any memory is shown."""
    return f"{question}\n\n{memory_slot(memories)}" if memories else question


def _pairs(history: Sequence[Exchange]) -> list[Message]:
    return [
        message
        for turn in history
        for message in (
            {"role": "user", "content": user_turn(turn.question, turn.memories)},
            {"role": "assistant", "content": turn.answer},
        )
    ]


def fit_history(
    head: list[Message],
    pairs: Sequence[list[Message]],
    tail: list[Message],
    budgets: Sequence[Budget],
) -> int:
    """How many of the newest earlier exchanges (`pairs`, oldest first) a prompt of
    head + exchanges + tail can carry within every budget."""

    def fits(n: int) -> bool:
        prompt = head + [m for pair in pairs[len(pairs) - n :] for m in pair] + tail
        return all(budget.fits(prompt) for budget in budgets)

    # Prompt length grows with each older exchange, so the longest fitting run of the newest
    # exchanges can be found by bisection.
    low, high = 0, len(pairs)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def render(
    system: str,
    history: Sequence[Exchange],
    question: str,
    memories: list[Memory],
    budgets: Sequence[Budget],
    answer: str | None = None,
    block: int = 1,
) -> Rendered:
    """The conversation as messages: the newest earlier exchanges whose prompt fits every
    budget, then the question with its memory slot, then the answer when training.

    Without `answer` this is the prompt a replica sends; with it, the training sample. The
    choice of history reads only the prompt, so the two differ by the answer alone. Old
    exchanges are dropped `block` at a time (the spec's `history_block`): the first one
    carried is always a multiple of `block`, so the next questions' prompts start the same.
    """
    head = [{"role": "system", "content": system}]
    tail = [{"role": "user", "content": user_turn(question, memories)}]
    start = len(history) - fit_history(head, [_pairs([turn]) for turn in history], tail, budgets)
    start = min(-(-start // block) * block, len(history))
    messages = head + _pairs(history[start:]) + tail
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    n_tokens = budgets[0].count(messages, answer=answer is not None) if budgets else 0
    return Rendered(messages, list(range(start, len(history))), start, n_tokens)
