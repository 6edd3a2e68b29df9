"""SFT: train a LoRA adapter on the author's answers, with TRL's SFTTrainer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

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
from raft.training.registry import ModelRecord

if TYPE_CHECKING:
    from rich.progress import Progress
    from transformers import Trainer


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


def train_sft(
    persona: Persona, record: ModelRecord, settings: LoraSettings, bar: Progress
) -> Trainer:
    trainer = build_sft_trainer(
        persona, settings, record.params["base_path"], run_dir(persona, record) / "checkpoints", bar
    )
    fit_and_save(persona, record, trainer)
    return trainer
