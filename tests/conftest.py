"""Shared fixtures: a temporary data folder, a real llama.cpp server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import free_port, wait_for_http

# No test may reach a hub: every model ships inside an installed package.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("RAFT_CHROMA_URL", None)


@pytest.fixture(scope="session", autouse=True)
def raft_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Converted models and evaluate's module copies go to one folder per test session."""
    folder = tmp_path_factory.mktemp("raft-cache")
    os.environ["RAFT_CACHE_DIR"] = str(folder)
    os.environ["HF_MODULES_CACHE"] = str(folder / "hf-modules")  # evaluate copies metrics here
    return folder


@pytest.fixture(scope="session")
def tiny_model(raft_cache_dir: Path) -> Path:
    """A random Llama of a few M parameters with SmolLM2's tokenizer: for run mechanics."""
    from benchmarks.random_model import write_random_llama

    return write_random_llama(raft_cache_dir / "tiny-llama", "tiny")  # written once a session


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("RAFT_DATA_DIR", str(folder))
    monkeypatch.setenv("RAFT_KEY_FILE", str(tmp_path / "no-keys.toml"))
    return folder


@pytest.fixture
def lena(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The tiny persona's inputs in a fresh data folder (no store): its folder and the CLI's
    environment."""
    from tests.tiny_persona import write_tiny_persona

    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    return data / "lena", {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(tmp_path / "no")}


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """`python -m llama_cpp.server` with SmolLM2 on 127.0.0.1; yields its /v1 base URL."""
    from raft.backends.models import smollm2_gguf

    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(smollm2_gguf()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "4096",
                "--model_alias",
                "smollm2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory):
    """The tiny persona after fetch, chunk, embed and ft:gen; yields (folder, env, result).
    Tests that change it work on a copy."""
    from tests.helpers import run_cli
    from tests.tiny_persona import FT_GEN, build_store

    data = tmp_path_factory.mktemp("ftgen") / "data"
    env = build_store(data)
    result = run_cli("raft", *FT_GEN, env=env)
    assert result.returncode == 0, result.stderr
    return data / "lena", env, result


@pytest.fixture(scope="session")
def extractive_lora(tmp_path_factory: pytest.TempPathFactory):
    """A LoRA trained two steps at a high rate (enough to change replies) on the tiny
    persona's extractive-memory messages, once a session; tests put a copy of its `models`
    folder beside the same messages with tiny_persona.add_lora."""
    from tests.helpers import run_cli
    from tests.tiny_persona import TrainedLora, cli_env, write_finetune, write_tiny_persona

    data = tmp_path_factory.mktemp("lora-extractive") / "data"
    write_finetune(write_tiny_persona(data / "lena"), memory_style="extractive")
    result = run_cli(
        "raft", "ft:run", "lena", "--max-steps", "2", "--lr", "5e-3", env=cli_env(data)
    )
    assert result.returncode == 0, result.stderr
    return TrainedLora(data / "lena" / "models", result)
