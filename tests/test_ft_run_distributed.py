"""`accelerate launch` runs `raft ft:run` unchanged: two CPU processes over gloo train like
one process with the same global batch, and write one record, one adapter, one summary.

The model is the tiny random Llama (benchmarks/random_model.py): the multi-process
mechanics are the same as for a real model, at a fraction of the time.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import BIN, REPO, free_port, run_cli
from tests.tiny_persona import registry, write_finetune, write_tiny_persona

DDP_CONFIG = REPO / "configs" / "accelerate" / "ddp.yaml"
STEPS = 4
# The single process takes 2 padded samples a step, each of the two processes 1: the same
# global batch. (Token packing would not do: bins of N tokens in each of two processes do
# not hold the samples one process's bins of 2N tokens hold.) A high learning rate, so that
# four steps move the validation loss measurably (10.763 -> 10.656).
TRAIN = ["ft:run", "lena", "--max-steps", str(STEPS), "--lr", "1e-2"]
# Both runs compute the same gradients: with LoRA dropout off, the validation loss after
# four steps agrees to every digit. Dropout draws its masks per process, which moved it by
# 7e-5 here; had each process stepped on its own gradients (no DDP wrapper), by 0.04.
TOLERANCE = 5e-3


def launch_command(processes: int, *args: str) -> list[str]:
    """`raft ARGS` under `accelerate launch` with the repository's DDP config, on a free port."""
    return [
        str(BIN / "accelerate"),
        "launch",
        "--config_file",
        str(DDP_CONFIG),
        "--num_processes",
        str(processes),
        "--main_process_port",
        str(free_port()),
        str(BIN / "raft"),
        *args,
    ]


def make_persona(root: Path, train_samples: int = 8) -> tuple[Path, dict[str, str]]:
    """The tiny persona with its training file grown to `train_samples` rows (its first
    rows again, under new ids): a multiple of the global batch, so that every step takes
    the same two samples in both runs."""
    persona = write_tiny_persona(root / "data" / "lena")
    messages = write_finetune(persona) / "messages.jsonl"
    rows = [json.loads(line) for line in messages.read_text().splitlines()]
    more = [row | {"id": f"{row['id']}+again"} for row in rows[: train_samples - len(rows)]]
    messages.write_text("".join(json.dumps(row) + "\n" for row in rows + more))
    return persona, {"RAFT_DATA_DIR": str(root / "data")}


def step_losses(persona: Path, record: dict) -> list[float]:
    state = persona / "models" / record["id"] / "checkpoints" / f"checkpoint-{STEPS}"
    history = json.loads((state / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path):
    """The same training as one process (2 samples a step) and as two (1 each), side by
    side: the results do not depend on timing, and the suite's cores are both used."""
    one, one_env = make_persona(tmp_path_factory.mktemp("one-process"))
    two, two_env = make_persona(tmp_path_factory.mktemp("two-processes"))
    tiny = str(tiny_model)
    command = launch_command(2, *TRAIN, "--base-model", tiny, "--batch-size", "1")
    with subprocess.Popen(
        command,
        env={**os.environ, **two_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as launched:
        single = run_cli("raft", *TRAIN, "--base-model", tiny, "--batch-size", "2", env=one_env)
        stdout, stderr = launched.communicate(timeout=600)
    double = subprocess.CompletedProcess(command, launched.returncode, stdout, stderr)
    assert single.returncode == 0, single.stderr
    assert double.returncode == 0, double.stderr
    return (one, single), (two, double)


def test_two_processes_reach_the_loss_of_one_with_the_same_global_batch(runs):
    (one, _), (two, _) = runs
    [alone], [together] = registry(one), registry(two)
    for metrics in (alone["metrics"], together["metrics"]):
        assert metrics["steps"] == STEPS and metrics["samples"] == 8
    # The same first batch, its loss averaged over the tokens of both processes (before
    # the first step LoRA adds nothing, so dropout cannot make the losses differ).
    losses_one, losses_two = step_losses(one, alone), step_losses(two, together)
    assert len(losses_one) == len(losses_two) == STEPS
    assert losses_two[0] == pytest.approx(losses_one[0], abs=1e-4)
    base, trained = alone["metrics"]["base_eval_loss"], alone["metrics"]["eval_loss"]
    assert together["metrics"]["base_eval_loss"] == pytest.approx(base, abs=1e-5)
    assert base - trained > 20 * TOLERANCE  # the steps moved the model
    assert together["metrics"]["eval_loss"] == pytest.approx(trained, abs=TOLERANCE)


def test_two_processes_write_one_record_one_adapter_one_summary(runs):
    _, (two, result) = runs
    [record] = registry(two)
    assert record["status"] == "succeeded"
    assert record["cost"]["world_size"] == 2
    assert sorted(p.name for p in (two / "models").iterdir()) == sorted(
        [record["id"], "registry.json"]
    )
    run = two / "models" / record["id"]
    assert sorted(p.name for p in run.iterdir()) == ["adapter", "checkpoints"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert [p.name for p in (run / "checkpoints").glob("checkpoint-*")] == [f"checkpoint-{STEPS}"]
    assert result.stdout == f"{record['id']}: succeeded -> models/{record['id']}/adapter\n"
    assert result.stderr.count(f"{record['id']}: {STEPS} steps on 8 samples") == 1
    assert result.stderr.count("training (SFT)") == 1
    assert "2 processes" in result.stderr


def test_a_failure_in_the_main_process_ends_every_process_with_one_message(tmp_path, tiny_model):
    persona = write_tiny_persona(tmp_path / "data" / "lena")  # no finetune/ yet
    start = time.monotonic()
    result = subprocess.run(
        launch_command(2, *TRAIN, "--base-model", str(tiny_model)),
        env={**os.environ, "RAFT_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert time.monotonic() - start < 120  # the other process did not wait for its peer
    assert result.stderr.count("raft: error: no ") == 1
    assert "finetune/messages.jsonl" in result.stderr
    assert not (persona / "models" / "registry.json").exists()
