"""One writer per persona: a second writer fails at once naming the holder, readers share
the persona with each other, and a holder killed with SIGKILL leaves nothing that blocks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.helpers import BIN, free_port, serve_app, wait_for_http
from tests.robustness.faulty_llm import FaultyLLM
from tests.sites import FakeSubstack
from tests.tiny_persona import write_tiny_persona

BUSY = "try again when it has finished (one command at a time may write to a persona)"


class GatedSubstack(FakeSubstack):
    """A Substack whose first `hold` post pages wait for the test to open the gate, so a
    fetch stays in the middle of its work for exactly as long as the test needs."""

    def __init__(self, base: str, hold: int):
        super().__init__(base)
        self.hold = hold
        self.entered = threading.Event()  # a fetch is waiting on a held page
        self.gate = threading.Event()
        self.guard = threading.Lock()

    def __call__(self, request: Request) -> Response:
        if request.path.startswith("/p/"):
            with self.guard:
                held, self.hold = self.hold > 0, self.hold - 1
            if held:
                self.entered.set()
                self.gate.wait(timeout=300)
        return super().__call__(request)


def gated_site(hold: int) -> Iterator[GatedSubstack]:
    server = HTTPServer(host="127.0.0.1", port=free_port(), threaded=True)
    server.start()
    site = GatedSubstack(server.url_for("").rstrip("/"), hold)
    server.expect_request("/api/v1/archive").respond_with_handler(site)
    server.expect_request(re.compile(r"^/p/")).respond_with_handler(site)
    try:
        yield site
    finally:
        site.gate.set()
        server.stop()


@pytest.fixture
def first_page_held() -> Iterator[GatedSubstack]:
    yield from gated_site(hold=1)


@pytest.fixture
def every_page_held() -> Iterator[GatedSubstack]:
    yield from gated_site(hold=1_000_000)


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "raft"), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(program: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """A CLI run that must end on its own: a lock that waited would hang here and fail."""
    return subprocess.run(
        [str(BIN / program), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def refused(result: subprocess.CompletedProcess) -> str:
    """The one error line of a command refused the lock (exit status 1)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("raft: error: ") or lines[0].startswith("ratf: error: ")
    assert lines[0].endswith(BUSY), lines[0]
    return lines[0]


def documents(corpus: Path) -> list[str]:
    return [json.loads(line)["link"] for line in corpus.read_text().splitlines()]


def test_two_fetches_of_one_source_keep_each_document_once(tmp_path, first_page_held):
    site = first_page_held
    env = {"RAFT_DATA_DIR": str(tmp_path / "data")}
    persona = tmp_path / "data" / "author"
    first = start(env, "fetch", "author", "--from", site.base)
    try:
        assert site.entered.wait(timeout=120), "the first fetch never reached a post page"
        second = cli("raft", "fetch", "author", "--from", site.base, env=env)
        line = refused(second)
        assert f"raft: error: {persona} is in use by " in line
        assert f"`raft fetch author --from {site.base}` (pid {first.pid})" in line
    finally:
        site.gate.set()
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr

    links = documents(persona / "corpus.jsonl")
    assert len(links) == len(set(links)) == len(site.posts)  # each document once
    chunked = cli("raft", "chunk", "author", env=env)
    assert chunked.returncode == 0, chunked.stderr


def test_serve_shares_the_persona_with_readers_and_keeps_writers_out(tmp_path):
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    env = {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(tmp_path / "no-keys.toml")}
    assert cli("raft", "fetch", "lena", env=env).returncode == 0

    llm = FaultyLLM()
    with serve_app(llm.app()) as url:
        model = f"openai:faulty@{url}"
        port = free_port()
        serve_args = ["serve", "lena", "--port", str(port), "--model", model, "--no-memories"]
        serve = start(env, *serve_args)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v1/models", serve)
            line = refused(cli("raft", "chunk", "lena", env=env))
            assert f"raft: error: {data / 'lena'} is in use by " in line
            assert f"`raft {' '.join(serve_args)}` (pid {serve.pid})" in line
            line = refused(cli("ratf", "report", "lena", env=env))
            assert f"(pid {serve.pid})" in line

            # Readers go side by side: a chat while serve runs, and info takes no lock.
            once = ["chat", "lena", "--model", model, "--no-memories", "--once", "Hello?"]
            chat = cli("raft", *once, env=env)
            assert chat.returncode == 0 and llm.reply in chat.stdout, chat.stderr
            assert cli("raft", "info", "lena", env=env).returncode == 0
            # The chat's end leaves serve holding the persona.
            assert f"(pid {serve.pid})" in refused(cli("raft", "chunk", "lena", env=env))
        finally:
            serve.terminate()
            serve.communicate(timeout=30)

    chunked = cli("raft", "chunk", "lena", env=env)
    assert chunked.returncode == 0, chunked.stderr


def test_a_writer_killed_with_sigkill_blocks_no_one(tmp_path, every_page_held):
    site = every_page_held
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    env = {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(tmp_path / "no-keys.toml")}
    assert cli("raft", "fetch", "lena", env=env).returncode == 0

    holder = start(env, "fetch", "lena", "--from", site.base)
    assert site.entered.wait(timeout=120), "the fetch never reached a post page"
    lock = data / "lena" / ".lock"
    assert str(holder.pid) in lock.read_text() and "raft fetch lena --from" in lock.read_text()
    # A reader waits for no writer either, and names it; commands that only look take no lock.
    chat = ["chat", "lena", "--no-memories", "--model", "local", "--once", "Hello?"]
    assert f"(pid {holder.pid})" in refused(cli("raft", *chat, env=env))
    assert f"(pid {holder.pid})" in refused(cli("ratf", "score", "lena", env=env))
    assert cli("raft", "info", "lena", env=env).returncode == 0

    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    assert str(holder.pid) in lock.read_text()  # its record is left behind, and stale
    chunked = cli("raft", "chunk", "lena", env=env)
    assert chunked.returncode == 0, chunked.stderr
    assert lock.read_text() == ""  # the next writer's record, cleared when it ended
