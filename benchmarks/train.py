"""ft:run local: training steps/s of `raft ft:run` against a plain TRL SFTTrainer script with the
same model, data and configuration, each in a fresh process, timed by the trainer itself.

`plain_trl` is that script: the device, dtype, batching and checkpointing come from raft's
registry record. `tuned_trl` is TRL set up as well as a user who knows it would on the same
device; `scripts/gpucheck` runs both (`python -m benchmarks.train plain|tuned ...`)."""

from __future__ import annotations

import importlib.util
import json
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import BIN, SEED, Result, paragraph, raft_env, run_measured

GOAL = 0.95
# Tokens per sample: half of raft's CPU default, so a step takes half as long; both sides
# train on the same samples, so the ratio is unchanged.
MAX_LENGTH = 512
PAIRS = 4


def write_samples(persona: Path, n: int, max_length: int = MAX_LENGTH) -> None:
    """finetune/messages.jsonl: packed samples built by raft's own formatting code."""
    from raft.conversation import ConversationSpec, Exchange, render, system_prompt
    from raft.dataset import to_trl
    from raft.memory import Memory

    rng = random.Random(SEED)
    memory = Memory("essay:0", "essay", "An essay", "", "2021-01-01", "", 0.1)
    memory.rephrased = paragraph(rng, 2)
    system = system_prompt("Hollis Penwarden", "Jo Park", "2022-01-01")
    turns = [Exchange(paragraph(rng, 1), paragraph(rng, 4), [memory]) for _ in range(n)]
    # Packed by cl100k counts with room to spare, so SmolLM2's tokens fit max_length and no
    # side trims or skips a sample.
    spec = ConversationSpec(target="Hollis Penwarden", max_tokens=max_length * 3 // 4, reserve=160)
    rows = []
    for i, turn in enumerate(turns):
        rendered = render(system, turns[:i], turn.question, [memory], [spec.budget], turn.answer)
        rows.append(to_trl(rendered.messages) | {"id": str(i)})
    (persona / "finetune").mkdir(parents=True)
    (persona / "finetune" / "messages.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows)
    )
    (persona / "finetune" / "stats.json").write_text(json.dumps({"spec": spec.to_row()}))
    (persona / "persona.toml").write_text('name = "Hollis Penwarden"\n')


# The TRL scripts. Plain: what raft's run recorded (its params and cost: device, dtype,
# batching, attention kernel, checkpointing), written out as a TRL user would, without raft's
# trainer code. Tuned: the best plain settings a TRL user would pick on that device. Both
# return the same measures as raft's registry, counted the same way: tokens that are not
# padding, and time over every optimizer step but the first (warm-up) where there are more.


def plain_trl(base: str | Path, messages: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """TRL's SFTTrainer with the settings raft's run recorded; `settings` is the registry
    record's params and cost in one dict (cost's keys win: `device` is the device's name)."""
    gpu = on_gpu(settings)
    dtype = settings["dtype"]  # bfloat16 | float16 | float32, as raft trained
    packed = settings["batching"] == "packed"
    passes = settings["passes_per_step"]
    if packed:  # bins of bin_tokens, batch_tokens of them per step
        rows = settings["batch_tokens"] // settings["bin_tokens"] // passes
    else:
        rows = settings["batch_size"] // passes
    checkpointing = settings["checkpointing"] == "on"
    config = {
        "per_device_train_batch_size": rows,
        "gradient_accumulation_steps": passes,
        "max_length": settings["bin_tokens"] or settings["max_length"],
        "packing": packed,
        "packing_strategy": "bfd",
        "padding_free": packed,
        "bf16": dtype == "bfloat16",
        "fp16": dtype == "float16",
        "activation_checkpointing": checkpointing,
        "activation_checkpointing_kwargs": {"use_reentrant": False} if checkpointing else None,
        "use_cpu": not gpu,
    }
    return train_trl(base, messages, settings, config, dtype, settings["attention"])


TUNED_GPU_BATCH_TOKENS = 16384  # twice raft's GPU aim: a large step, to give TRL every chance


def tuned_trl(base: str | Path, messages: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """TRL's SFTTrainer as a user who knows it would set it up on the same device: packed
    (best-fit decreasing) and padding-free, bf16 (fp16 without it) on a GPU, no activation
    checkpointing, Liger's kernels where installed, flash-attention where installed, and
    large token batches; the same rows, model, LoRA, steps and optimizer as `plain_trl`."""
    import torch

    gpu = on_gpu(settings)
    max_length = settings["max_length"]
    if gpu:
        dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        batch_tokens = settings.get("tuned_batch_tokens") or max(
            TUNED_GPU_BATCH_TOKENS, settings.get("batch_tokens") or 0
        )
    else:
        dtype = "float32"  # a CPU's bf16 is emulated on most: slower, not faster
        batch_tokens = settings.get("tuned_batch_tokens") or max_length
    flash = gpu and importlib.util.find_spec("flash_attn") is not None
    bins = max(1, batch_tokens // max_length)
    config = {
        # flash-attention takes a step's bins in one varlen pass; sdpa's mask is dense over
        # the whole flattened pass, so there one bin a pass, accumulated, costs less.
        "per_device_train_batch_size": bins if flash else 1,
        "gradient_accumulation_steps": 1 if flash else bins,
        "max_length": max_length,
        "packing": True,
        "packing_strategy": "bfd",
        "padding_free": True,
        "bf16": dtype == "bfloat16",
        "fp16": dtype == "float16",
        "activation_checkpointing": False,
        "use_liger_kernel": gpu and importlib.util.find_spec("liger_kernel") is not None,
        "use_cpu": not gpu,
    }
    attention = "flash_attention_2" if flash else "sdpa"
    return train_trl(base, messages, settings, config, dtype, attention)


def on_gpu(settings: dict[str, Any]) -> bool:
    """Whether raft's run trained on a GPU: its record names the CPU as `cpu (...)`."""
    return not str(settings["device"]).startswith("cpu")


def train_trl(
    base: str | Path,
    messages: Path,
    settings: dict[str, Any],
    batching: dict[str, Any],
    dtype: str,
    attention: str,
) -> dict[str, Any]:
    """Train a LoRA with TRL for `settings["max_steps"]` steps; what it cost."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from raft.training.cost import step_meter

    rows = []
    for line in messages.read_text().splitlines():
        conversation = json.loads(line)["messages"]
        rows.append({"prompt": conversation[:-1], "completion": conversation[-1:]})
    meter = step_meter()
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            max_steps=settings["max_steps"],
            learning_rate=settings["lr"],
            lr_scheduler_type="cosine",
            warmup_steps=0.03,
            logging_steps=1,
            save_strategy="steps",
            save_steps=settings["save_steps"],
            save_total_limit=2,
            report_to="none",
            disable_tqdm=True,
            seed=settings["seed"],
            completion_only_loss=True,
            ddp_find_unused_parameters=False,
            **batching,
        )
        model = AutoModelForCausalLM.from_pretrained(
            str(base), dtype=getattr(torch, dtype), attn_implementation=attention
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(str(base)),
            peft_config=LoraConfig(
                r=settings["lora_r"],
                lora_alpha=settings["lora_alpha"],
                lora_dropout=0.05,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            ),
            callbacks=[meter],
        )
        runtime = trainer.train().metrics["train_runtime"]
    return summary(meter) | {"train_runtime": runtime, "all_steps": trainer.state.global_step}


def summary(meter: Any) -> dict[str, Any]:
    """What a TRL run cost, counted by raft's step meter the way raft's registry counts:
    tokens that are not padding, time over every step but the first (warm-up)."""
    from raft import accelerator

    steps = meter.steps
    timed = steps[1:] if len(steps) > 1 else steps
    total = sum(s[1] for s in steps)
    real = sum(s[0] for s in steps)
    return {
        "steps": len(timed),
        "seconds": sum(s[2] for s in timed),
        "tokens": sum(s[0] for s in timed),
        "padding_fraction": round(1 - real / total, 4) if total else None,
        "peak_memory_gb": round(accelerator.peak_memory_bytes() / 1e9, 2),
    }


def last_record(persona: Path) -> dict:
    return json.loads((persona / "models" / "registry.json").read_text())["models"][-1]


def raft_rate(persona: Path, steps: int) -> float:
    """Steps/s of `raft ft:run` (local LoRA), as it records them in the registry."""
    command = ["ft:run", persona.name, "--max-steps", str(steps), "--save-steps", str(steps)]
    command += ["--max-length", str(MAX_LENGTH)]
    run_measured([str(BIN / "raft"), *command], raft_env(persona.parent))
    metrics = last_record(persona)["metrics"]
    return metrics["steps"] / metrics["train_seconds"]


def raw_rate(persona: Path, steps: int) -> float:
    """Steps/s of the plain TRL script with the settings raft's last run recorded."""
    record = last_record(persona)
    settings = record["params"] | record["cost"]
    assert settings["max_steps"] == steps
    command = [sys.executable, "-m", "benchmarks.train", "plain", str(persona / "finetune")]
    raw = subprocess.run(
        [*command, json.dumps(settings)],
        capture_output=True,
        text=True,
        check=True,
        env=raft_env(persona.parent) | {"PATH": str(BIN)},
    )
    done = json.loads(raw.stdout.strip().splitlines()[-1])
    return done["all_steps"] / done["train_runtime"]


def describe_settings(cost: dict[str, Any]) -> str:
    batches = (
        f"bins of {cost['bin_tokens']} tokens packed whole, {cost['batch_tokens']} tokens a step"
        if cost["batching"] == "packed"
        else f"batches of {cost['batch_size']} padded samples"
    )
    return f"{cost['dtype']}, {batches}, checkpointing {cost['checkpointing']}"


def run(quick: bool) -> list[Result]:
    steps = 4 if quick else 8
    rates: dict[Callable, list[float]] = {raft_rate: [], raw_rate: []}
    with tempfile.TemporaryDirectory() as folder:
        persona = Path(folder) / "bench"
        write_samples(persona, 64)
        for pair in range(1 if quick else PAIRS):
            # In turns, each in a fresh process, the side that goes first alternating (raft
            # first: the plain script takes its parameters from raft's record).
            for side in (raft_rate, raw_rate) if pair % 2 == 0 else (raw_rate, raft_rate):
                rates[side].append(side(persona, steps))
        how = describe_settings(last_record(persona)["cost"])
    raft_rates, raw_rates = rates[raft_rate], rates[raw_rate]
    ours, reference = statistics.median(raft_rates), statistics.median(raw_rates)
    ratio = ours / reference
    ratios = [a / b for a, b in zip(raft_rates, raw_rates, strict=True)]  # for the note
    first, second = statistics.mean(ratios[::2]), statistics.mean(ratios[1::2] or ratios)
    return [
        Result(
            "ft:run local",
            f"SFT steps/s ({steps} steps of {MAX_LENGTH} tokens, SmolLM2-135M, LoRA r=16, CPU)",
            ours,
            reference,
            ratio,
            f">= {GOAL} of raw",
            ratio >= GOAL,
            "Both timed by the trainer's own train_runtime (model loading excluded; the "
            f"checkpoint at the last step included on both sides); {len(ratios)} pairs of runs "
            "taken in turns, each in a fresh process, which side goes first alternating; the "
            f"medians of each side. Ratio per pair: {', '.join(f'{r:.3f}' for r in ratios)} "
            f"(mean with raft first {first:.3f}, second {second:.3f}: a run is faster second in "
            "a pair, whichever side it is). The plain script takes the device, dtype, batching "
            f"and checkpointing raft's run recorded ({how}; TRL's defaults would be bf16 and "
            "activation checkpointing).",
        )
    ]


if __name__ == "__main__":
    # python -m benchmarks.train plain|tuned FINETUNE_FOLDER SETTINGS_JSON: one JSON line.
    variant, folder, given = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    script = {"plain": plain_trl, "tuned": tuned_trl}[variant]
    print(json.dumps(script(given["base_path"], folder / "messages.jsonl", given)))
