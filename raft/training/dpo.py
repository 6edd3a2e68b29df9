"""DPO: prefer the author's real answer over the base model's own reply to the same prompt.

The rejected replies are generated once, in batches, and cached like every model call.
Training starts from the newest SFT adapter when there is one; TRL then keeps a frozen
copy of it as the reference, so DPO moves the replica away from its SFT starting point
only where the preference data says so.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from raft import distributed
from raft.backends.cache import Cache, cache_key
from raft.console import err
from raft.errors import UsageError
from raft.paths import Persona
from raft.training.base import (
    LoraSettings,
    fit_and_save,
    lora_config,
    prepare_training,
    progress_callback,
    run_dir,
    trainer_args,
)
from raft.training.data import training_rows
from raft.training.registry import SUCCEEDED, ModelRecord, load_records

if TYPE_CHECKING:
    from rich.progress import Progress

REPLY_TOKENS = 256
# Prompts per generate call: a GPU has room for more rows of KV cache at once.
GENERATE_BATCH = {"cpu": 8, "cuda": 32}


def reply_budget(tokenizer: Any, answer: str) -> int:
    """Room for a reply twice the real answer's length: longer rambling adds no signal."""
    return min(REPLY_TOKENS, 2 * len(tokenizer(answer)["input_ids"]) + 16)


def base_replies(
    model: Any,
    tokenizer: Any,
    model_id: str,
    rows: list[dict[str, Any]],
    cache: Cache,
    bar: Progress,
) -> list[str]:
    """The base model's greedy reply to each row's prompt; cached, batched where not cached.

    Greedy decoding is prefix-stable, so a batch generates to its largest budget and each
    reply is cut at its own: the same text a single call with that budget would give.
    """
    import torch

    budgets = [reply_budget(tokenizer, r["completion"][0]["content"]) for r in rows]
    keys = [
        cache_key(
            kind="chat", model=model_id, messages=r["prompt"], temperature=0.0, max_tokens=b, seed=0
        )
        for r, b in zip(rows, budgets, strict=True)
    ]
    replies = {k: json.loads(v)["content"] for k, v in cache.get_many(keys).items()}
    missing = sorted(
        (i for i, key in enumerate(keys) if key not in replies), key=budgets.__getitem__
    )
    task = bar.add_task("base-model replies", total=len(rows), completed=len(rows) - len(missing))
    tokenizer.padding_side = "left"  # generation continues from the right end of every row
    model.eval()
    size = GENERATE_BATCH.get(model.device.type, 8)
    for start in range(0, len(missing), size):
        batch = missing[start : start + size]
        inputs = tokenizer.apply_chat_template(
            [rows[i]["prompt"] for i in batch],
            add_generation_prompt=True,
            padding=True,
            return_tensors="pt",
            return_dict=True,
        ).to(model.device)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=budgets[batch[-1]], do_sample=False)
        width = inputs["input_ids"].shape[1]
        items = []
        for row, i in enumerate(batch):
            text = tokenizer.decode(out[row, width : width + budgets[i]], skip_special_tokens=True)
            replies[keys[i]] = text.strip()
            items.append((keys[i], json.dumps({"content": text.strip()}).encode("utf-8")))
        cache.put_many("chat", items)
        bar.update(task, advance=len(batch))
    tokenizer.padding_side = "right"
    return [replies[key] for key in keys]


def newest_sft(persona: Persona, base_model: str) -> ModelRecord | None:
    done = [
        r
        for r in load_records(persona)
        if r.venue == "local"
        and r.method == "sft"
        and r.status == SUCCEEDED
        and r.base_model == base_model
        and (persona.root / r.model).is_dir()
    ]
    return done[-1] if done else None


def preference_rows(rows: list[dict[str, Any]], replies: list[str]) -> list[dict[str, Any]]:
    """prompt, chosen (the real answer), rejected (the base reply); equal pairs teach nothing."""
    return [
        {
            "prompt": r["prompt"],
            "chosen": r["completion"],
            "rejected": [{"role": "assistant", "content": reply}],
        }
        for r, reply in zip(rows, replies, strict=True)
        if reply and reply.strip() != r["completion"][0]["content"].strip()
    ]


def train_dpo(persona: Persona, record: ModelRecord, settings: LoraSettings, bar: Progress) -> None:
    from datasets import Dataset
    from peft import PeftModel
    from trl import DPOConfig, DPOTrainer

    base = record.params["base_path"]
    # On the accelerator, in its dtype: the base replies are generated there too.
    setup = prepare_training(settings, base)
    model, tokenizer = setup.model, setup.tokenizer
    train, valid = training_rows(persona, settings, base)
    # Under accelerate launch the main process generates and caches the replies; the
    # others then read them from the cache instead of writing the same rows at once.
    with distributed.main_first():
        replies = base_replies(
            model,
            tokenizer,
            record.params["base_id"],
            train + valid,
            Cache(persona.cache),
            bar,
        )
    n = len(train)
    train, valid = preference_rows(train, replies[:n]), preference_rows(valid, replies[n:])
    if not train:
        raise UsageError("no preference pair: the base model repeats every real answer")
    sft = newest_sft(persona, record.base_model)
    peft_config = lora_config(settings)
    if sft:
        err.print(f"DPO starts from the SFT adapter {sft.id}")
        model = PeftModel.from_pretrained(model, str(persona.root / sft.model), is_trainable=True)
        peft_config = None
        record.params["start_adapter"] = sft.id
    # Padded pairs: TRL 1.16 turns DPOConfig's padding_free off ("temporarily unavailable").
    config = DPOConfig(
        **trainer_args(
            settings,
            run_dir(persona, record) / "checkpoints",
            bool(valid),
            setup.plan,
            setup.checkpointing,
        ),
        beta=0.1,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(valid) if valid else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[setup.meter, progress_callback(bar, "training (DPO)")],
    )
    trainer.cost_meter = setup.meter
    fit_and_save(persona, record, trainer)
