"""`scripts/gpucheck`: raft's training and answer scoring at accelerator speed, side by side.

One run, one machine: a randomly initialised Llama-shaped model (~1B parameters; built from
a config and the shipped SmolLM2 tokenizer, so no network is needed) is trained for a fixed
number of steps by `raft ft:run` with today's GPU settings and with its defaults, by the
plain TRL script with raft's settings and by a tuned TRL variant, on the same rows; then the
answer likelihood of the same model is scored. Each run is a fresh process, so each peak
memory is its own. The table goes to stdout and, on a GPU, to docs/benchmarks.md.

`TINY=1` runs the same steps with a tiny model on a CPU in under a minute (the test suite
runs it so); its numbers say nothing about speed, and no goal is judged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from benchmarks.common import BIN, REPO, raft_env
from benchmarks.report import GPU_BEGIN, GPU_END, machine, replace_gpu_section

PERSONA = "gpucheck"
TRL_HOW = {
    "plain": "raft's recorded device, dtype, batching and checkpointing, in plain TRL",
    "tuned": "packed padding-free bins, bf16 on a GPU, no checkpointing, Liger and "
    "flash-attention where installed",
}


@dataclass(frozen=True)
class Plan:
    preset: str  # of benchmarks.random_model
    samples: int
    steps: int
    max_length: int
    likelihood_copies: int  # of the sample's held-out interview


PLANS = {
    "tiny": Plan("tiny", samples=24, steps=2, max_length=512, likelihood_copies=1),
    "1b": Plan("1b", samples=1024, steps=30, max_length=2048, likelihood_copies=16),
}

# The goals, judged on a GPU only.
MFU_GOAL = 0.35
SPEEDUP_GOAL = 2.0
PADDING_GOAL = 0.02
TUNED_GOAL = 0.9
LIKELIHOOD_GOAL = 50_000


@dataclass
class Row:
    """One measured run: what it trained or scored, at what cost."""

    name: str
    tokens_per_second: float
    padding_fraction: float | None
    peak_memory_gb: float
    seconds_per_step: float | None
    mfu: float | None
    note: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/gpucheck", description=__doc__.split("\n")[0])
    parser.add_argument("--doc", type=Path, help="where to write the table (docs/benchmarks.md)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if unknown")
    parser.add_argument("--keep", type=Path, help="keep the model and runs in this folder")
    args = parser.parse_args()
    tiny = os.environ.get("TINY", "") not in ("", "0")
    plan = PLANS["tiny" if tiny else "1b"]
    from raft import accelerator

    if not tiny and not accelerator.cuda():
        sys.exit("gpucheck: no CUDA device; run `TINY=1 scripts/gpucheck` to try it on a CPU")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows = check(plan, args.keep, args.peak_tflops)
    else:
        with tempfile.TemporaryDirectory(prefix="raft-gpucheck-") as folder:
            rows = check(plan, Path(folder), args.peak_tflops)
    section = render(plan, rows, judged=not tiny)
    print("\n".join(section))
    doc = args.doc or (None if tiny else REPO / "docs" / "benchmarks.md")
    if doc:
        replace_gpu_section(doc, section)
        print(f"gpucheck: wrote {doc}")


def check(plan: Plan, folder: Path, peak: float | None) -> list[Row]:
    from benchmarks.random_model import write_random_llama
    from benchmarks.train import write_samples

    model = write_random_llama(folder / "model", plan.preset)
    persona = folder / "data" / PERSONA
    write_samples(persona, plan.samples, plan.max_length)
    flags = ["--max-steps", str(plan.steps), "--max-length", str(plan.max_length)]
    flags += ["--peak-tflops", str(peak)] if peak else []
    today = raft_row(
        "raft ft:run, the old GPU settings (batches of 4 samples, activation checkpointing)",
        folder,
        model,
        [*flags, "--batch-size", "4", "--checkpointing", "on"],
    )
    ours = raft_row("raft ft:run (defaults)", folder, model, flags)
    params = last_record(persona)
    rows = [today, ours]
    for variant, name in [("plain", "plain TRL, raft's settings"), ("tuned", "tuned TRL")]:
        rows.append(trl_row(variant, name, persona, params, peak))
    rows.append(likelihood_row(model, plan))
    return rows


def raft_row(name: str, folder: Path, model: Path, flags: list[str]) -> Row:
    from benchmarks.train import describe_settings

    command = [str(BIN / "raft"), "ft:run", PERSONA, "--base-model", str(model), *flags]
    done = subprocess.run(
        command, env={**os.environ, **raft_env(folder / "data")}, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"gpucheck: {' '.join(command[1:])} failed:\n{done.stderr[-3000:]}")
    record = last_record(folder / "data" / PERSONA)
    cost = record["cost"]
    return Row(
        name,
        cost["tokens_per_second"],
        cost["padding_fraction"],
        cost["peak_memory_gb"],
        cost["seconds_per_step"],
        cost["mfu"],
        describe_settings(cost),
    )


def trl_row(variant: str, name: str, persona: Path, params: dict, peak: float | None) -> Row:
    """A TRL script in its own process (benchmarks.train), on raft's rows and base model."""
    command = [sys.executable, "-m", "benchmarks.train", variant, str(persona / "finetune")]
    done = subprocess.run(
        [*command, json.dumps(params)],
        env={**os.environ, **raft_env(persona.parent)},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"gpucheck: the {variant} TRL script failed:\n{done.stderr[-3000:]}")
    run = json.loads(done.stdout.strip().splitlines()[-1])
    from raft.training.cost import mfu

    rate = run["tokens"] / run["seconds"]
    return Row(
        name,
        rate,
        run["padding_fraction"],
        run["peak_memory_gb"],
        run["seconds"] / run["steps"],
        mfu(params["flops_per_token"], rate, params["peak_tflops"] or peak, 1),
        TRL_HOW[variant],
    )


def likelihood_row(model: Path, plan: Plan) -> Row:
    """Answer likelihood of the same model on what `ratf score` scores: the sample persona's
    held-out interview, copied as distinct interviews; in a fresh process."""
    command = [sys.executable, "-m", "benchmarks.likelihood", "throughput", str(model)]
    done = subprocess.run(
        [*command, "--copies", str(plan.likelihood_copies)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"gpucheck: answer likelihood failed:\n{done.stderr[-3000:]}")
    run = json.loads(done.stdout.strip().splitlines()[-1])
    return Row(
        "answer likelihood (scored answer tokens/s)",
        run["tokens_per_second"],
        run.get("padding_fraction"),
        run["peak_memory_gb"],
        None,
        None,
        f"{run['pairs']} answers ({run['workload']}), {run['dtype']}",
    )


def last_record(persona: Path) -> dict:
    record = json.loads((persona / "models" / "registry.json").read_text())["models"][-1]
    return record["params"] | record["cost"] | {"cost": record["cost"]}


def verdicts(rows: list[Row]) -> list[tuple[str, str, bool]]:
    """(goal, measured, met) for each of the issue's goals."""
    today, ours, _, tuned, likelihood = rows
    best_trl = max(rows[2:4], key=lambda r: r.tokens_per_second)
    return [
        (f"MFU >= {MFU_GOAL:.0%}", _pct(ours.mfu), (ours.mfu or 0) >= MFU_GOAL),
        (
            f">= {SPEEDUP_GOAL:g}x the tokens/s of the old GPU settings",
            f"{ours.tokens_per_second / today.tokens_per_second:.2f}x",
            ours.tokens_per_second >= SPEEDUP_GOAL * today.tokens_per_second,
        ),
        (
            f"padding <= {PADDING_GOAL:.0%}",
            _pct(ours.padding_fraction),
            (ours.padding_fraction or 0) <= PADDING_GOAL,
        ),
        (
            f">= {TUNED_GOAL:g}x the best TRL variant ({best_trl.name})",
            f"{ours.tokens_per_second / best_trl.tokens_per_second:.2f}x",
            ours.tokens_per_second >= TUNED_GOAL * best_trl.tokens_per_second,
        ),
        (
            f"answer likelihood >= {LIKELIHOOD_GOAL:,} tokens/s",
            f"{likelihood.tokens_per_second:,.0f}",
            likelihood.tokens_per_second >= LIKELIHOOD_GOAL,
        ),
    ]


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def render(plan: Plan, rows: list[Row], judged: bool) -> list[str]:
    """The docs section: machine, table, goals (markers included)."""
    from raft import accelerator

    lines = [
        GPU_BEGIN,
        "## GPU check (`scripts/gpucheck`)",
        "",
        f"Run on {date.today().isoformat()} on {accelerator.device_name()}"
        + ("" if judged else " with TINY=1 (a tiny model: no goal is judged)")
        + f"; model preset {plan.preset!r}, {plan.samples} samples, {plan.steps} steps, "
        f"--max-length {plan.max_length}.",
        "",
        *machine(),
        "",
        "| run | tokens/s | padding | peak GB | s/step | MFU | how |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step = "—" if r.seconds_per_step is None else f"{r.seconds_per_step:.3g}"
        lines.append(
            f"| {r.name} | {r.tokens_per_second:,.0f} | {_pct(r.padding_fraction)} | "
            f"{r.peak_memory_gb:.2f} | {step} | {_pct(r.mfu)} | {r.note} |"
        )
    if judged:
        lines += ["", "| goal | measured | |", "|---|---|---|"]
        for goal, value, met in verdicts(rows):
            lines.append(f"| {goal} | {value} | {'met' if met else '**not met**'} |")
    lines += [
        "",
        "MFU counts 6 x parameters FLOPs per trained (non-padding) token against the device's "
        "dense bf16 peak; tokens/s counts non-padding tokens.",
        GPU_END,
    ]
    return lines


if __name__ == "__main__":
    main()
