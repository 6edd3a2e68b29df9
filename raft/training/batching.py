"""How a local run fills each optimizer step: token batches, the attention kernel that keeps
packed samples apart, and whether activations are recomputed (activation checkpointing).

SFT packs whole samples into bins by best-fit decreasing and trains padding-free: the bins
of a step are one flat sequence whose position ids restart at every sample, from which
transformers builds a block-diagonal causal mask (sdpa) or the varlen boundaries
(flash-attention), so no sample attends to another and no token is padding.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from raft import accelerator

# Activation memory a training pass keeps per token and decoder layer, in elements of the
# training dtype. Measured with torch's saved-tensor hooks on Llama-shaped models under
# LoRA (all linear layers, dropout 0.05) on the CPU: 16.6-18.5 x hidden + 5 x intermediate
# (gate, up, their activation and product, and the dropout copy of down's input). The
# hidden factor is rounded up to 20 for the float32 copies RMSNorm keeps in bf16 runs.
# The logits add nothing that grows with the batch: TRL's fused LM head computes the loss
# tile by tile (4096 tokens at a time) and never holds them whole.
HIDDEN_FACTOR = 20
INTERMEDIATE_FACTOR = 5
# Share of free memory kept back for the CUDA context, allocator slack and LoRA's optimizer.
HEADROOM = 0.1
# Tokens per device and optimizer step aimed at on a GPU: large enough that a 1B model's
# matrix multiplies fill the GPU, small enough that the sample persona (about 70k tokens)
# still takes 8-9 optimizer steps per epoch, as today's 4-sample batches take 13.
GPU_BATCH_TOKENS = 8192
CHECKPOINTING = ("auto", "on", "off")


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate and the FLOPs count need to know about a model."""

    layers: int
    hidden: int
    intermediate: int
    parameters: int  # all of the base model's, a tied embedding counted once


def shape_of(model: Any) -> ModelShape:
    config = model.config.get_text_config()
    return ModelShape(
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        intermediate=getattr(config, "intermediate_size", None) or 4 * config.hidden_size,
        parameters=model.num_parameters(),
    )


def model_shape(base: str) -> ModelShape:
    """The shape of a checkpoint from its config alone: built on the meta device, no weights."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base)
    with torch.device("meta"):
        return shape_of(AutoModelForCausalLM.from_config(config))


def activation_bytes(shape: ModelShape, tokens: int, dtype_bytes: int) -> int:
    """Estimated memory of one training pass's activations over `tokens` tokens, without
    checkpointing."""
    per_layer = HIDDEN_FACTOR * shape.hidden + INTERMEDIATE_FACTOR * shape.intermediate
    return tokens * shape.layers * per_layer * dtype_bytes


def room_for_activations(shape: ModelShape, free_bytes: int, dtype_bytes: int) -> int:
    """What the device has for activations once the weights are in: free memory, measured
    before loading, less the weights and the headroom."""
    return int(free_bytes * (1 - HEADROOM)) - shape.parameters * dtype_bytes


def attention_kernel() -> str:
    """flash-attention 2 on a GPU where the package is installed (varlen: a packed pass costs
    what its samples cost apart), else torch's sdpa with a block-diagonal mask."""
    if accelerator.cuda() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def default_batch_tokens(
    max_length: int, shape: ModelShape | None, free_bytes: int, dtype_bytes: int
) -> int:
    """--batch-tokens when not given. On a CPU, --max-length: one bin per step, the largest
    sample fits, and a step costs about what one padded sample costs today. On a GPU, the
    multiple of --max-length nearest GPU_BATCH_TOKENS (at least one) whose activations fit
    beside the weights, so checkpointing stays off where it can."""
    if shape is None or not accelerator.cuda():
        return max_length
    rows = max(1, GPU_BATCH_TOKENS // max_length)
    room = room_for_activations(shape, free_bytes, dtype_bytes)
    while rows > 1 and activation_bytes(shape, rows * max_length, dtype_bytes) > room:
        rows -= 1
    return rows * max_length


@dataclass(frozen=True)
class BatchPlan:
    """One optimizer step: `accumulation` passes of `rows` rows each. Packed: each row a bin
    of at most `bin_tokens` tokens (the rows of a pass are concatenated, padding-free).
    Padded: each row one sample, padded to the longest in its pass."""

    packed: bool
    rows: int
    accumulation: int
    bin_tokens: int | None
    batch_tokens: int | None
    attention: str

    @property
    def pass_tokens(self) -> int | None:
        """Most tokens one forward pass holds (what activation memory scales with)."""
        return self.bin_tokens * self.rows if self.bin_tokens else None

    def describe(self) -> dict[str, Any]:
        return {
            "batching": "packed" if self.packed else "padded",
            "batch_tokens": self.batch_tokens,
            "batch_size": None if self.packed else self.rows * self.accumulation,
            "bin_tokens": self.bin_tokens,
            "passes_per_step": self.accumulation,
            "attention": self.attention,
        }


def packed_plan(batch_tokens: int, max_length: int, attention: str) -> BatchPlan:
    """Bins that every fitted sample fits whole (at least --max-length tokens). With
    flash-attention a step is one bin of --batch-tokens, one pass: varlen attention costs
    what the samples cost apart, and a big bin packs fullest. With sdpa, whose mask is dense
    over the whole packed sequence, the step is as many --max-length bins as --batch-tokens
    holds, one per pass (gradients accumulate), so attention costs a bin's square, not the
    step's."""
    if attention == "flash_attention_2":
        return BatchPlan(True, 1, 1, batch_tokens, batch_tokens, attention)
    passes = max(1, batch_tokens // max_length)
    return BatchPlan(True, 1, passes, batch_tokens // passes, batch_tokens, attention)


def padded_plan(batch_size: int, attention: str) -> BatchPlan:
    return BatchPlan(False, batch_size, 1, None, None, attention)


@dataclass(frozen=True)
class Checkpointing:
    on: bool
    reason: str


def choose_checkpointing(
    mode: str, shape: ModelShape, pass_tokens: int, free_bytes: int, dtype_bytes: int
) -> Checkpointing:
    """--checkpointing: `on`/`off` as asked; `auto` recomputes activations only when one
    pass's estimated activations exceed what the device has free beside the weights (a
    second forward per step is a third more compute for memory that is not short)."""
    if mode in ("on", "off"):
        return Checkpointing(mode == "on", f"--checkpointing {mode}")
    need = activation_bytes(shape, pass_tokens, dtype_bytes)
    room = room_for_activations(shape, free_bytes, dtype_bytes)
    fits = need <= room
    return Checkpointing(
        not fits,
        f"auto: activations ~{gb(need)} for {pass_tokens:,} tokens per pass "
        f"{'fit in' if fits else 'exceed'} {gb(max(room, 0))} free beside the weights",
    )


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"
