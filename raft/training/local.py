"""`raft ft:run --backend local`: start or resume a run's record, train it by its method
(SFT or DPO), and record how it ended.

A run is in the registry from its first step, so an interrupted run can be resumed and a
failed one stays on record.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

from raft import accelerator, distributed
from raft.console import err, progress_bar
from raft.errors import UsageError
from raft.paths import Persona
from raft.training.base import (
    DEFAULT_LR,
    LoraSettings,
    base_model_id,
    check_batching,
    default_max_length,
    last_checkpoint,
    resolve_base_model,
    resolve_batch_tokens,
)
from raft.training.cost import describe as describe_cost
from raft.training.data import dataset_spec, require_training_file
from raft.training.dpo import train_dpo
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
from raft.training.sft import train_sft


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
    id) and alone writes and prints (see raft.distributed)."""
    err.quiet = not distributed.is_main()
    record = distributed.from_main(lambda: start_run(persona, settings))
    distributed.require_same("the training files", input_digests(persona, record))
    settings = settings_of(record)
    train = train_dpo if settings.method == "dpo" else train_sft
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
