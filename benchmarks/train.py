"""ft:run local: training steps/s of `raft ft:run` against a plain TRL SFTTrainer script with the
same model, data and configuration, each in a fresh process, timed by the trainer itself."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import BIN, SEED, Result, paragraph, raft_env, run_measured

GOAL = 0.95
# Tokens per sample: half of raft's CPU default, so a step takes half as long; both sides
# train on the same samples, so the ratio is unchanged.
MAX_LENGTH = 512
PAIRS = 4


def write_samples(persona: Path, n: int) -> None:
    """finetune/messages.jsonl: packed samples built by raft's own formatting code."""
    from raft.conversation import ConversationSpec, Exchange, render, system_prompt
    from raft.dataset import to_trl
    from raft.memories import Memory

    rng = random.Random(SEED)
    memory = Memory("essay:0", "essay", "An essay", "", "2021-01-01", "", 0.1)
    memory.rephrased = paragraph(rng, 2)
    system = system_prompt("Hollis Penwarden", "Jo Park", "2022-01-01")
    turns = [Exchange(paragraph(rng, 1), paragraph(rng, 4), [memory]) for _ in range(n)]
    # Packed by cl100k counts with room to spare, so SmolLM2's tokens fit MAX_LENGTH and no
    # side trims or skips a sample.
    spec = ConversationSpec(target="Hollis Penwarden", max_tokens=MAX_LENGTH * 3 // 4, reserve=160)
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


def plain_trl(messages: Path, base: str, params: dict) -> None:
    """The plain TRL script: the same rows, model, LoRA and trainer settings as the raft run."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = []
    for line in messages.read_text().splitlines():
        conversation = json.loads(line)["messages"]
        rows.append({"prompt": conversation[:-1], "completion": conversation[-1:]})
    steps = params["max_steps"]
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out,
            per_device_train_batch_size=params["batch_size"] or 1,
            max_steps=steps,
            learning_rate=params["lr"],
            lr_scheduler_type="cosine",
            warmup_steps=0.03,
            logging_steps=1,
            save_strategy="steps",
            save_steps=params["save_steps"],
            use_cpu=True,
            # TRL's defaults are bf16 and activation checkpointing; raft sets both off on a CPU.
            bf16=False,
            gradient_checkpointing=False,
            max_length=params["max_length"],
            report_to="none",
            disable_tqdm=True,
            seed=params["seed"],
            completion_only_loss=True,
        )
        trainer = SFTTrainer(
            model=AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=AutoTokenizer.from_pretrained(base),
            peft_config=LoraConfig(
                r=params["lora_r"],
                lora_alpha=params["lora_alpha"],
                lora_dropout=0.05,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            ),
        )
        metrics = trainer.train().metrics
    print(json.dumps({"steps": trainer.state.global_step, "seconds": metrics["train_runtime"]}))


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
    """Steps/s of the plain TRL script with the parameters raft's last run recorded."""
    params = last_record(persona)["params"]
    assert params["max_steps"] == steps
    raw = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", str(persona / "finetune"), json.dumps(params)],
        capture_output=True,
        text=True,
        check=True,
        env=raft_env(persona.parent) | {"PATH": str(BIN)},
    )
    done = json.loads(raw.stdout.strip().splitlines()[-1])
    return done["steps"] / done["seconds"]


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
            "a pair, whichever side it is). The plain script sets bf16 "
            "and activation checkpointing off, as raft does on a CPU (TRL's defaults turn both "
            "on).",
        )
    ]


if __name__ == "__main__":
    folder, params = Path(sys.argv[1]), json.loads(sys.argv[2])
    plain_trl(folder / "messages.jsonl", params["base_path"], params)
