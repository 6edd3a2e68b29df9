"""ft:run batching on the CPU: padding of token bins against padded batches on the sample
persona's own dataset, and two processes under `accelerate launch` against one.

The GPU side of the same questions (tokens/s, MFU) is `scripts/gpucheck`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from benchmarks.common import BIN, REPO, Result, free_port, raft_env

PADDING_GOAL = 0.02
LOSS_TOLERANCE = 5e-3  # as tests/test_ft_run_distributed.py, which says why


def raft(data: Path, *args: str, launch: int = 0) -> dict:
    """Run `raft ARGS` (under `accelerate launch` with `launch` processes); its record."""
    command = [str(BIN / "raft"), *args]
    if launch:
        config = REPO / "configs" / "accelerate" / "ddp.yaml"
        command = [
            *[str(BIN / "accelerate"), "launch", "--config_file", str(config)],
            *["--num_processes", str(launch), "--main_process_port", str(free_port())],
            *command,
        ]
    done = subprocess.run(
        command, env={**os.environ, **raft_env(data)}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    persona = data / args[1]
    return json.loads((persona / "models" / "registry.json").read_text())["models"][-1]


def run_stage(data: Path, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "raft"), *args], env={**os.environ, **raft_env(data)}, capture_output=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"raft {' '.join(args)} failed: {done.stderr.decode()[-2000:]}")


def padding(quick: bool) -> list[Result]:
    """Three steps each way on the sample's plain dataset (no memories, no model calls to
    make it), SmolLM2 at --max-length 1024."""
    steps = "2" if quick else "3"
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        shutil.copytree(REPO / "data" / "sample", data / "sample")
        # As scripts/demo makes it; the plain dataset needs the store only to exist.
        run_stage(data, "fetch", "sample")
        run_stage(data, "chunk", "sample", "--max-tokens", "256")
        run_stage(data, "embed", "sample")
        run_stage(data, "ft:gen", "sample", "--no-memories")
        common = ["ft:run", "sample", "--dataset", "plain", "--max-steps", steps]
        common += ["--max-length", "1024", "--save-steps", steps]
        packed = raft(data, *common)["cost"]
        padded = raft(data, *common, "--batch-size", "4")["cost"]
    return [
        Result(
            "ft:run batching",
            "padding fraction, sample persona's plain dataset, 1024 tokens, CPU",
            packed["padding_fraction"],
            padded["padding_fraction"],
            None,
            f"<= {PADDING_GOAL:.0%}",
            packed["padding_fraction"] <= PADDING_GOAL,
            f"raft = bins of {packed['batch_tokens']} tokens, samples packed whole and kept "
            "apart by position ids (the default); raw = batches of 4 samples padded to the "
            f"longest (the old GPU default); {steps} steps each. Non-padding tokens/s on "
            f"this CPU: {packed['tokens_per_second']:,.0f} packed, "
            f"{padded['tokens_per_second']:,.0f} padded.",
        )
    ]


def processes(quick: bool) -> list[Result]:
    """The tiny random Llama, 4 steps: one process with 2 samples a step against two
    processes over gloo with 1 each, from the same data."""
    from benchmarks.random_model import write_random_llama
    from tests.tiny_persona import write_finetune, write_tiny_persona

    losses = []
    with tempfile.TemporaryDirectory() as folder:
        model = str(write_random_llama(Path(folder) / "model", "tiny"))
        for count, batch in [(1, "2"), (2, "1")]:
            data = Path(folder) / f"data-{count}"
            messages = write_finetune(write_tiny_persona(data / "lena")) / "messages.jsonl"
            rows = messages.read_text().splitlines()
            messages.write_text("\n".join(rows + rows[: 8 - len(rows)]) + "\n")
            args = ["ft:run", "lena", "--base-model", model, "--max-steps", "4", "--lr", "1e-2"]
            record = raft(data, *args, "--batch-size", batch, launch=count if count > 1 else 0)
            losses.append(record["metrics"]["eval_loss"])
    one, two = losses
    return [
        Result(
            "ft:run processes",
            "validation loss after 4 steps, 2 processes (gloo) vs 1, same global batch",
            two,
            one,
            None,
            f"within {LOSS_TOLERANCE:g}",
            abs(two - one) <= LOSS_TOLERANCE,
            f"Validation loss {two:.6f} with 2 processes, {one:.6f} with 1 (difference "
            f"{two - one:+.1e}). The tiny random Llama (benchmarks/random_model.py), 8 samples, "
            "padded batches "
            "of 2 samples on one process against 1 on each of two; LoRA dropout draws its "
            "masks per process, the only source of the difference.",
        )
    ]


def run(quick: bool) -> list[Result]:
    return padding(quick) + processes(quick)
