"""What a local training run cost, measured while it trains and kept in its registry record:
tokens per second (padding not counted), padding, peak accelerator memory, seconds per step
and the model FLOPs utilisation (MFU).

FLOPs per token follow the usual convention, 6 x the base model's parameters (forward 2,
backward 4). Under LoRA the frozen weights need no weight gradient, so the hardware does
about 4 x parameters per token (plus a recomputed forward under activation checkpointing):
the MFU here is the conventional figure, comparable with full fine-tuning numbers, not the
share of the hardware's work.
"""

from __future__ import annotations

import time
from typing import Any

from raft import accelerator, distributed
from raft.training.batching import BatchPlan, Checkpointing, ModelShape

Step = tuple[int, int, float]  # one optimizer step: real tokens, tokens in the tensors, seconds


def step_meter() -> Any:
    """A TrainerCallback that counts the tokens of every training pass and times every
    optimizer step, into its `steps`. The TRL baselines in benchmarks/ count with it too,
    so both sides of a comparison count the same way."""
    import torch
    from transformers import TrainerCallback

    def synchronize() -> None:
        if accelerator.cuda():
            torch.cuda.synchronize()

    class StepMeter(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[Step] = []
            self.real = self.total = 0
            self.started = 0.0
            self.hook = None

        def count(self, module, args, kwargs) -> None:
            # Training passes only: not evaluation, nor DPO's reference pass (no gradient).
            if not (module.training and torch.is_grad_enabled()):
                return
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            mask = kwargs.get("attention_mask")
            # Padding-free passes have no mask and no padding; padded ones mark it with zeros.
            # Kept as tensors until the step ends, so counting never waits for the GPU.
            self.real = self.real + (mask.sum() if mask is not None else ids.numel())
            self.total += ids.numel()

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.hook = model.register_forward_pre_hook(self.count, with_kwargs=True)
            accelerator.reset_peak_memory()

        def on_step_begin(self, args, state, control, **kwargs):
            synchronize()
            self.real = self.total = 0
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            synchronize()
            self.steps.append((int(self.real), self.total, time.perf_counter() - self.started))

        def on_train_end(self, args, state, control, **kwargs):
            if self.hook is not None:
                self.hook.remove()
                self.hook = None

    return StepMeter()


def meter_callback(
    shape: ModelShape, plan: BatchPlan, checkpointing: Checkpointing, peak_tflops: float | None
) -> Any:
    """The step meter of a raft run: after training its `cost` holds the registry's cost
    fields, summed over the processes of a launch."""
    meter = step_meter()
    meter.cost = {}
    stop = meter.on_train_end

    def on_train_end(args, state, control, **kwargs):
        stop(args, state, control, **kwargs)
        meter.cost = summarize(
            gather(meter.steps), shape, plan, checkpointing, peak_tflops, peak_memory()
        )

    meter.on_train_end = on_train_end
    return meter


def gather(steps: list[Step]) -> list[Step]:
    """Each step's tokens summed over the processes of a launch, its time the slowest one's."""
    if not distributed.launched():
        return steps
    import torch.distributed as dist

    found: list[Any] = [None] * distributed.world_size()
    dist.all_gather_object(found, steps)
    return [
        (sum(s[0] for s in step), sum(s[1] for s in step), max(s[2] for s in step))
        for step in zip(*found, strict=False)
    ]


def peak_memory() -> int:
    """The largest peak of any process."""
    peak = accelerator.peak_memory_bytes()
    if not distributed.launched():
        return peak
    import torch.distributed as dist

    found: list[Any] = [None] * distributed.world_size()
    dist.all_gather_object(found, peak)
    return max(found)


def summarize(
    steps: list[Step],
    shape: ModelShape,
    plan: BatchPlan,
    checkpointing: Checkpointing,
    peak_tflops: float | None,
    peak_bytes: int,
) -> dict[str, Any]:
    """The registry's cost fields. Rates leave out the first step when there are more: it
    pays for warm-up (kernel selection, the allocator's first blocks), not for training."""
    world = distributed.world_size()
    timed = steps[1:] if len(steps) > 1 else steps
    real = sum(s[0] for s in timed)
    seconds = sum(s[2] for s in timed)
    total = sum(s[1] for s in steps)
    rate = real / seconds if seconds > 0 else None
    flops_per_token = 6 * shape.parameters
    utilisation = mfu(flops_per_token, rate, peak_tflops, world)
    return {
        "device": accelerator.device_name(),
        "dtype": accelerator.dtype_name(accelerator.dtype()),
        "world_size": world,
        "steps": len(steps),
        "tokens": sum(s[0] for s in steps),
        "tokens_per_second": round(rate, 1) if rate is not None else None,
        "padding_fraction": round(1 - sum(s[0] for s in steps) / total, 4) if total else None,
        "peak_memory_gb": round(peak_bytes / 1e9, 2),
        "seconds_per_step": round(seconds / len(timed), 3) if timed else None,
        "flops_per_token": flops_per_token,
        "peak_tflops": peak_tflops,
        "mfu": round(utilisation, 4) if utilisation is not None else None,
        "checkpointing": "on" if checkpointing.on else "off",
        "checkpointing_reason": checkpointing.reason,
        **plan.describe(),
    }


def mfu(
    flops_per_token: float, tokens_per_second: float | None, peak_tflops: float | None, world: int
) -> float | None:
    """Model FLOPs utilisation: the model's FLOPs a second over the devices' dense peak;
    None where the peak is unknown (a CPU, or a GPU not in the table)."""
    if tokens_per_second is None or not peak_tflops:
        return None
    return flops_per_token * tokens_per_second / (peak_tflops * 1e12 * world)


def describe(cost: dict[str, Any]) -> str:
    """One line for `raft models`: where the run trained and what it cost."""
    processes = cost.get("world_size", 1)
    parts = [
        cost.get("device", "?"),
        cost.get("dtype", "?"),
        f"{processes} process{'es' if processes != 1 else ''}",
    ]
    if cost.get("tokens_per_second") is not None:
        parts.append(f"{cost['tokens_per_second']:,.0f} tok/s")
    if cost.get("padding_fraction") is not None:
        parts.append(f"padding {cost['padding_fraction']:.1%}")
    if cost.get("peak_memory_gb") is not None:
        parts.append(f"peak {cost['peak_memory_gb']:.1f} GB")
    if cost.get("seconds_per_step") is not None:
        parts.append(f"{cost['seconds_per_step']:.2f} s/step")
    parts.append(f"MFU {cost['mfu']:.1%}" if cost.get("mfu") is not None else "MFU -")
    if cost.get("checkpointing"):
        parts.append(f"checkpointing {cost['checkpointing']}")
    return ", ".join(parts)
