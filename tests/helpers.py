"""Helpers shared by the tests: run the real CLIs, find ports, wait for servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from raft.backends.llm import Reply, Usage

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


def run_cli(program: str, *args: str, env: dict[str, str] | None = None, **kwargs):
    """Run an installed console script as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [str(BIN / program), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    """Poll until the server answers; fail early if its process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"no answer from {url} after {timeout}s")


def start_serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, int]:
    """Start `raft serve lena ARGS` on a free port of 127.0.0.1; (process, port)."""
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "raft"), "serve", "lena", "--port", str(port), *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, port


@contextmanager
def raft_serve(env: dict[str, str], *args: str) -> Iterator[str]:
    """`raft serve lena ARGS` as a process on a free port of 127.0.0.1; yields its /v1 URL."""
    process, port = start_serve(env, *args)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"{url}/models", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def serve_app(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 in a thread; yields its /v1 base URL."""
    import threading

    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class PromptRecorder:
    """A real LLM implementation with fixed verdicts and replies, recording its prompts."""

    model_id = "recorder"
    concurrency = 1
    VERDICTS = {"closer": "A", "real": 1, "useful": True, "consistent": True, "reason": "fixed"}

    def __init__(self):
        self.prompts: list[str] = []

    def complete(self, messages, *, schema=None, **params):
        self.prompts.append(messages[-1]["content"])
        if schema is None:
            return Reply("I remember writing about it.", Usage(1))
        if schema["required"] == ["verdicts"]:  # a batch: the same verdict for each memory
            item = schema["properties"]["verdicts"]["items"]
            verdicts = [
                {"id": n} | {key: self.VERDICTS[key] for key in item["required"][1:]}
                for n in item["properties"]["id"]["enum"]
            ]
            return Reply(json.dumps({"verdicts": verdicts}), Usage(1))
        return Reply(json.dumps({key: self.VERDICTS[key] for key in schema["required"]}), Usage(1))
