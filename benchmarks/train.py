"""ft:run local: training steps/s of `raft ft:run` against a plain TRL SFTTrainer script with the
same model, data and configuration, each in a fresh process, timed by the trainer itself."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BIN, SEED, Result, paragraph, raft_env, run_measured

GOAL = 0.95


def write_samples(persona: Path, n: int) -> None:
    """finetune/messages.jsonl: packed samples built by raft's own formatting code."""
    from raft.dataset import pack_sample, to_trl
    from raft.memories import Memory, system_prompt, user_turn

    rng = random.Random(SEED)
    memory = Memory("essay:0", "essay", "An essay", "", "2021-01-01", "", 0.1)
    memory.rephrased = paragraph(rng, 2)
    system = system_prompt("Hollis Penwarden", "Jo Park", "2022-01-01")
    turns = [(user_turn(paragraph(rng, 1), [memory]), paragraph(rng, 4)) for _ in range(n)]
    rows = [to_trl(pack_sample(system, turns, i, 1024).messages) | {"id": str(i)} for i in range(n)]
    (persona / "finetune").mkdir(parents=True)
    (persona / "finetune" / "messages.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in rows)
    )
    (persona / "persona.toml").write_text('name = "Hollis Penwarden"\n')


def raw_training(messages: Path, base: str, params: dict) -> None:
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


def run(quick: bool) -> list[Result]:
    steps = 4 if quick else 8
    raft_rates, raw_rates = [], []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        write_samples(data / "bench", 64)
        for _ in range(1 if quick else 2):
            # raft first, then the plain script, in turns: both see the same machine state.
            command = ["ft:run", "bench", "--max-steps", str(steps), "--save-steps", str(steps)]
            run_measured([str(BIN / "raft"), *command], raft_env(data))
            registry = json.loads((data / "bench" / "models" / "registry.json").read_text())
            record = registry["models"][-1]
            metrics, params = record["metrics"], record["params"]
            raft_rates.append(metrics["steps"] / metrics["train_seconds"])
            raw = subprocess.run(
                [sys.executable, "-m", "benchmarks.train", str(data / "bench" / "finetune")]
                + [json.dumps(params)],
                capture_output=True,
                text=True,
                check=True,
                env=raft_env(data) | {"PATH": str(BIN)},
            )
            done = json.loads(raw.stdout.strip().splitlines()[-1])
            raw_rates.append(done["steps"] / done["seconds"])
    ours, reference = sum(raft_rates) / len(raft_rates), sum(raw_rates) / len(raw_rates)
    ratio = ours / reference
    return [
        Result(
            "ft:run local",
            f"SFT steps/s ({steps} steps, SmolLM2-135M, LoRA r=16, CPU)",
            ours,
            reference,
            ratio,
            f">= {GOAL} of raw",
            ratio >= GOAL,
            "Both timed by the trainer's own train_runtime (model loading and evaluation "
            "excluded), mean of runs taken in turns.",
        )
    ]


if __name__ == "__main__":
    folder, params = Path(sys.argv[1]), json.loads(sys.argv[2])
    raw_training(folder / "messages.jsonl", params["base_path"], params)
