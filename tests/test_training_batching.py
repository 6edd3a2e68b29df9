"""Token batches, activation checkpointing and the recorded cost of `raft ft:run`, on a tiny
random Llama with the shipped SmolLM2 tokenizer (benchmarks.random_model): the mechanics of
batching do not need a trained model, and a step of it costs a fraction of SmolLM2's."""

from __future__ import annotations

import warnings

import pytest

from raft.paths import Persona
from raft.training.base import LoraSettings, count_samples
from raft.training.batching import ModelShape, choose_checkpointing
from raft.training.sft import build_sft_trainer
from tests.tiny_persona import finetune_persona


def sample_spans(batch: dict) -> list[tuple[int, int]]:
    """Where each sample of a padding-free batch lies: its position ids restart at 0."""
    positions = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
    return list(zip(starts, starts[1:], strict=False))


def test_packed_samples_are_whole_and_do_not_attend_to_each_other(tmp_path, tiny_model):
    import torch

    persona_dir, _ = finetune_persona(tmp_path)
    settings = LoraSettings(max_length=1024, batch_tokens=1024)
    trainer = build_sft_trainer(Persona("lena", persona_dir), settings, str(tiny_model), tmp_path)
    padded = build_sft_trainer(
        Persona("lena", persona_dir),
        LoraSettings(max_length=1024, batch_size=1),
        str(tiny_model),
        tmp_path,
    )
    # Every sample is in one bin, whole: the bins hold exactly the samples' own token counts.
    lengths = sorted(len(row["input_ids"]) for row in padded.train_dataset)
    bins = trainer.train_dataset
    assert sorted(n for row in bins["seq_lengths"] for n in row) == lengths
    assert count_samples(bins) == len(lengths) == 5
    assert all(len(row["input_ids"]) <= 1024 for row in bins)
    assert len(bins) < len(lengths)  # several samples share a bin

    model = trainer.model.eval()
    shared = next(row for row in bins if len(row["seq_lengths"]) > 1)
    batch = trainer.data_collator([shared])
    assert "attention_mask" not in batch  # padding-free: nothing is padding
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        packed = model(**inputs).logits[0]
        for start, end in sample_spans(batch):
            alone = model(input_ids=batch["input_ids"][:, start:end]).logits[0]
            # The same logits as the sample alone: no token saw another sample's tokens.
            assert torch.allclose(packed[start:end], alone, atol=1e-4)
        # Control: one sequence with running positions lets later samples see earlier ones.
        start, end = sample_spans(batch)[1]
        merged = model(input_ids=batch["input_ids"]).logits[0]
        assert not torch.allclose(merged[start:end], packed[start:end], atol=1e-4)


def test_checkpointing_on_reaches_the_model_without_deprecation_warnings(tmp_path, tiny_model):
    persona_dir, _ = finetune_persona(tmp_path)
    settings = LoraSettings(max_length=1024, max_steps=1, checkpointing="on")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = build_sft_trainer(
            Persona("lena", persona_dir), settings, str(tiny_model), tmp_path / "out"
        )
        trainer.train()
    assert trainer.model.is_activation_checkpointing
    cost = trainer.cost_meter.cost
    assert (cost["checkpointing"], cost["checkpointing_reason"]) == ("on", "--checkpointing on")
    deprecated = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert not deprecated


GIB = 1 << 30
# Llama-3.2-1B's shape with SmolLM2's vocabulary (benchmarks.random_model's "1b").
ONE_B = ModelShape(layers=16, hidden=2048, intermediate=8192, parameters=1_100_000_000)


@pytest.mark.parametrize(
    ("mode", "tokens", "free", "on", "reason"),
    [
        ("auto", 8192, 140 * GIB, False, "fit in"),  # an H200: ~9.7 GB of activations fit
        ("auto", 8192, 16 * GIB, True, "exceed"),  # a 16 GB card holds the weights, not them
        ("off", 8192, 16 * GIB, False, "--checkpointing off"),
        ("on", 8192, 140 * GIB, True, "--checkpointing on"),
    ],
)
def test_auto_checkpointing_turns_on_only_when_activations_do_not_fit(
    mode, tokens, free, on, reason
):
    choice = choose_checkpointing(mode, ONE_B, tokens, free, dtype_bytes=2)
    assert choice.on is on and reason in choice.reason
