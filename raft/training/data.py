"""The rows a local run trains on: a dataset's `messages(.valid).jsonl` as TRL
prompt/completion rows, each fitted to the model's length by the rule inference uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raft.console import err
from raft.conversation import Budget, ConversationSpec, fit_history, training_spec
from raft.errors import UsageError
from raft.files import read_jsonl
from raft.paths import Persona, ft_gen_command
from raft.training.base import LoraSettings


def load_conversations(path: Path) -> list[dict[str, Any]]:
    """TRL prompt/completion rows from a `messages` file: the loss covers the completion only."""
    if not path.is_file():
        return []
    rows = []
    for row in read_jsonl(path):
        messages = row.get("messages") or []
        if len(messages) < 2 or messages[-1].get("role") != "assistant":
            raise UsageError(f"{path}: sample {row.get('id')!r} does not end with an answer")
        rows.append({"id": row.get("id", ""), "prompt": messages[:-1], "completion": messages[-1:]})
    return rows


def fit_to_length(rows: list[dict[str, Any]], budget: Budget) -> tuple[list[dict[str, Any]], int]:
    """Each sample with as many of its newest earlier exchanges as the model's budget takes,
    chosen by the rule inference uses (`raft.conversation.fit_history`, which never reads
    the answer); samples whose answer still overflows the budget are skipped.

    The system prompt, the final question with its memories, and the answer always stay:
    cutting tokens blindly would train on a clipped answer or a prompt without its persona.
    """
    kept, skipped = [], 0
    for row in rows:
        head, middle, tail = row["prompt"][:1], row["prompt"][1:-1], row["prompt"][-1:]
        pairs = [middle[i : i + 2] for i in range(0, len(middle), 2)]
        n = fit_history(head, pairs, tail, [budget])
        prompt = head + [m for pair in pairs[len(pairs) - n :] for m in pair] + tail
        if budget.count(prompt + row["completion"], answer=True) > budget.limit:
            skipped += 1
            continue
        kept.append(row | {"prompt": prompt})
    return kept, skipped


def require_training_file(persona: Persona, dataset: str) -> Path:
    train_file = persona.dataset(dataset) / "messages.jsonl"
    if not train_file.is_file():
        raise UsageError(f"no {train_file}: run `{ft_gen_command(persona, dataset)}` first")
    return train_file


def dataset_spec(persona: Persona, dataset: str) -> ConversationSpec:
    """The conversation spec the training files were made with."""
    spec = training_spec(persona, dataset)
    if spec is None:
        raise UsageError(
            f"{persona.dataset(dataset) / 'stats.json'} records no conversation spec: re-run "
            f"`{ft_gen_command(persona, dataset)}` (cached calls cost nothing)"
        )
    return spec


def model_budget(persona: Persona, settings: LoraSettings, base: str) -> Budget:
    """The model's own budget: --max-length tokens of its tokenizer, of which the dataset's
    answer reserve is kept for the answer, as at inference."""
    return Budget(settings.max_length, dataset_spec(persona, settings.dataset).reserve, base)


def training_rows(
    persona: Persona, settings: LoraSettings, base: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The train and validation rows of the dataset's `messages(.valid).jsonl`, fitted to
    length."""
    train_file = require_training_file(persona, settings.dataset)
    budget = model_budget(persona, settings, base)
    train, skipped = fit_to_length(load_conversations(train_file), budget)
    valid_file = train_file.with_name("messages.valid.jsonl")
    valid, _ = fit_to_length(load_conversations(valid_file), budget)
    if skipped:
        err.print(
            f"skipped {skipped} samples whose answer does not fit --max-length {budget.limit} "
            f"beside the shortest prompt"
        )
    if not train:
        raise UsageError(f"{train_file}: no sample fits in --max-length {budget.limit}")
    return train, valid
