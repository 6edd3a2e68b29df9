"""`raft ft:run --backend openai` against a stand-in of OpenAI's fine-tuning API.

The real CLI runs as a subprocess and the real `openai` client speaks HTTP to the stand-in
(tests/openai_standin.py); the tests assert on what a user sees and on the registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import BIN, run_cli
from tests.openai_standin import StandIn, serving

NAME = "ada"
BASE = "gpt-4.1-mini-2025-04-14"
KEY = "sk-test-" + secrets.token_hex(16)


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn(api_key=KEY)
    with serving(server):
        yield server
    server.release.set()


@pytest.fixture
def env(standin: StandIn) -> dict[str, str]:
    return {"OPENAI_BASE_URL": standin.url, "OPENAI_API_KEY": KEY, "RAFT_POLL_INTERVAL": "0.05"}


def example(i: int, answer: bool = True) -> dict:
    messages = [
        {"role": "system", "content": "You are Ada, answering from memory."},
        {"role": "user", "content": f"Question {i}: what did you write about engines?"},
    ]
    if answer:
        messages.append({"role": "assistant", "content": f"Answer {i}: notes.", "weight": 1})
    return {"messages": messages}


def write_finetune(data_dir: Path, rows: list[dict], valid: list[dict] | None = None) -> Path:
    """finetune/openai.jsonl (and .valid.jsonl) as ft:gen writes them; returns the folder."""
    folder = data_dir / NAME / "finetune"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "openai.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if valid is not None:
        (folder / "openai.valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid))
    return folder


def registry(data_dir: Path) -> list[dict]:
    return json.loads((data_dir / NAME / "models" / "registry.json").read_text())["models"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_key_kept_secret(data_dir: Path, *outputs: str) -> None:
    for output in outputs:
        assert KEY not in output
    for path in data_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, timeout=30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"raft exited early: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_upload_and_successful_job(data_dir, standin, env):
    folder = write_finetune(data_dir, [example(i) for i in range(10)], [example(99)])
    args = ["ft:run", NAME, "--backend", "openai", "--base-model", BASE, "--epochs", "2"]
    result = run_cli("raft", *args, env=env)
    assert result.returncode == 0, result.stderr
    (job_id,) = standin.jobs
    job = standin.jobs[job_id]
    model = job["fine_tuned_model"]
    assert result.stdout.strip() == f"openai-{job_id}: succeeded -> {model}"
    assert standin.contents[job["training_file"]] == (folder / "openai.jsonl").read_bytes()
    assert standin.contents[job["validation_file"]] == (folder / "openai.valid.jsonl").read_bytes()
    body = standin.create_bodies[job_id]
    assert body["suffix"] == NAME and body["model"] == BASE
    assert body["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 2}},
    }
    assert "[step 2/2] training loss 0.750" in result.stderr
    assert "The job has successfully completed" in result.stderr

    (record,) = registry(data_dir)
    assert record["status"] == "succeeded" and record["model"] == model
    assert record["base_model"] == BASE and record["job_id"] == job_id
    assert record["files"]["train"]["sha256"] == sha256(folder / "openai.jsonl")
    assert record["files"]["valid"]["sha256"] == sha256(folder / "openai.valid.jsonl")
    assert record["files"]["train"]["file_id"] == job["training_file"]
    assert record["params"]["n_epochs"] == 2
    assert record["metrics"]["train_loss"] == 0.75 and record["metrics"]["eval_loss"] == 0.9
    assert record["metrics"]["trained_tokens"] == job["trained_tokens"]

    listing = run_cli("raft", "models", NAME, env={"COLUMNS": "300"})
    assert listing.returncode == 0
    assert f"openai-{job_id}" in listing.stdout and model in listing.stdout
    assert_key_kept_secret(data_dir, result.stdout, result.stderr, listing.stdout)


def test_invalid_training_file_fails_the_job_and_stays_on_record(data_dir, standin, env):
    write_finetune(data_dir, [example(i, answer=i != 3) for i in range(10)])
    result = run_cli("raft", "ft:run", NAME, "--backend", "openai", "--base-model", BASE, env=env)
    assert result.returncode == 1
    (job,) = standin.jobs.values()
    message = job["error"]["message"]
    assert "Example 4: contains no assistant messages" in message
    assert f"raft: error: job {job['id']} failed: {message}" in result.stderr
    assert job["validation_file"] is None  # no valid file written: none uploaded
    (record,) = registry(data_dir)
    assert record["status"] == "failed" and record["model"] == ""
    assert record["error"] == f"invalid_training_file: {message}"
    assert_key_kept_secret(data_dir, result.stdout, result.stderr)


def test_interrupted_wait_detaches_and_the_same_command_reattaches(data_dir, standin, env):
    write_finetune(data_dir, [example(i) for i in range(10)], [example(99)])
    args = ["ft:run", NAME, "--backend", "openai", "--base-model", BASE, "--batch-size", "4"]
    standin.hold()
    process = subprocess.Popen(
        [str(BIN / "raft"), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: any(j["status"] == "running" for j in standin.jobs.values()), process)
        process.send_signal(signal.SIGINT)
        out, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    (job_id,) = standin.jobs
    assert process.returncode == 130, errors
    assert f"detached from job {job_id}; it keeps running" in errors
    assert f"raft ft:run {NAME} --backend openai --base-model {BASE} --batch-size 4" in errors
    assert standin.jobs[job_id]["status"] == "running"  # detaching never cancels
    (record,) = registry(data_dir)
    assert record["status"] == "running" and record["job_id"] == job_id

    standin.release.set()
    result = run_cli("raft", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert f"re-attaching to running job {job_id}" in result.stderr
    assert len(standin.jobs) == 1
    assert standin.uploads("openai.jsonl") == 1 and standin.uploads("openai.valid.jsonl") == 1
    (record,) = registry(data_dir)
    assert record["status"] == "succeeded"
    assert record["model"] == standin.jobs[job_id]["fine_tuned_model"]
    assert result.stdout.strip().endswith(record["model"])
    assert_key_kept_secret(data_dir, out, errors, result.stdout, result.stderr)


def test_changed_data_starts_a_new_job_reusing_unchanged_uploads(data_dir, standin, env):
    folder = write_finetune(data_dir, [example(i) for i in range(10)], [example(99)])
    args = ["ft:run", NAME, "--backend", "openai", "--base-model", BASE]
    assert run_cli("raft", *args, env=env).returncode == 0
    (folder / "openai.jsonl").write_text(
        "".join(json.dumps(example(i)) + "\n" for i in range(10, 20))
    )
    result = run_cli("raft", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert len(standin.jobs) == 2
    assert standin.uploads("openai.jsonl") == 2 and standin.uploads("openai.valid.jsonl") == 1
    assert "reusing upload" in result.stderr
    assert [r["status"] for r in registry(data_dir)] == ["succeeded", "succeeded"]


def test_missing_training_file_or_base_model_is_a_usage_error(data_dir, env):
    (data_dir / NAME).mkdir()
    result = run_cli("raft", "ft:run", NAME, "--backend", "openai", "--base-model", BASE, env=env)
    assert result.returncode == 2
    assert f"raft ft:gen {NAME}" in result.stderr
    write_finetune(data_dir, [example(i) for i in range(10)])
    result = run_cli("raft", "ft:run", NAME, "--backend", "openai", env=env)
    assert result.returncode == 2
    assert "--base-model" in result.stderr
    assert not (data_dir / NAME / "models" / "registry.json").exists()


def test_key_from_key_file_is_used_but_never_shown(data_dir, standin, env, tmp_path):
    write_finetune(data_dir, [example(i) for i in range(10)])
    key_file = tmp_path / "keys.toml"
    key_file.write_text(f'openai = "{KEY}"\n')
    env = {**env, "OPENAI_API_KEY": "", "RAFT_KEY_FILE": str(key_file)}
    result = run_cli("raft", "ft:run", NAME, "--backend", "openai", "--base-model", BASE, env=env)
    assert result.returncode == 0, result.stderr
    assert standin.keys_seen == {KEY}
    assert_key_kept_secret(data_dir, result.stdout, result.stderr)

    wrong = "sk-test-" + secrets.token_hex(16)
    args = ["ft:run", NAME, "--backend", "openai", "--base-model", BASE]
    result = run_cli("raft", *args, env={**env, "OPENAI_API_KEY": wrong})
    assert result.returncode == 1
    assert "refused the API key" in result.stderr
    assert wrong not in result.stderr and wrong not in result.stdout


def test_running_job_the_server_lost_is_marked_failed_then_replaced(data_dir, standin, env):
    write_finetune(data_dir, [example(i) for i in range(10)])
    args = ["ft:run", NAME, "--backend", "openai", "--base-model", BASE]
    assert run_cli("raft", *args, env=env).returncode == 0
    path = data_dir / NAME / "models" / "registry.json"
    (record,) = registry(data_dir)
    record.update(status="running", job_id="ftjob-gone", model="")
    path.write_text(json.dumps({"models": [record]}))

    result = run_cli("raft", *args, env=env)
    assert result.returncode == 1
    assert "job ftjob-gone: job not found on" in result.stderr
    assert registry(data_dir)[0]["status"] == "failed"
    result = run_cli("raft", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert len(standin.jobs) == 2
    assert [r["status"] for r in registry(data_dir)] == ["failed", "succeeded"]
