"""Hardening round 3: the persona lock's record and file, the Host check, and the links the
web pages make.

`raft serve` runs as a real process on 127.0.0.1 with the tiny persona's inputs only and an
OpenAI-compatible stand-in as its model (`--no-memories`), so no model is loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import raft_serve, run_cli, serve_app, start_serve, wait_for_http
from tests.robustness.faulty_llm import FaultyLLM
from tests.tiny_persona import write_tiny_persona

SECRET = "s3cret-XYZ"
BUSY = "try again when it has finished (one command at a time may write to a persona)"


@pytest.fixture(scope="module")
def model() -> Iterator[str]:
    """The stand-in chat model, as a backend spec."""
    with serve_app(FaultyLLM().app()) as url:
        yield f"openai:faulty@{url}"


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("raft: error: "), lines[0]
    return lines[0]


def dead_pid() -> int:
    """The pid of a process that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# -- 4. the API key on disk ----------------------------------------------------------------


def test_the_serve_api_key_never_reaches_the_lock_file_or_a_refused_writers_error(lena, model):
    folder, env = lena
    lock = folder / ".lock"
    # An older raft's record: readable by all, a killed holder's line holding a key.
    lock.write_text(f"{dead_pid()} shared raft serve lena --api-key old-{SECRET}\n")
    lock.chmod(0o644)

    args = ["--model", model, "--no-memories"]
    first, port = start_serve(env, *args, "--api-key", SECRET)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", first, timeout=120)
        record = lock.read_text()
        assert SECRET not in record
        assert record == (
            f"{first.pid} shared raft serve lena --port {port} --model {model} "
            "--no-memories --api-key REDACTED\n"
        )  # the dead holder's line is gone
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600

        line = one_error_line(run_cli("raft", "chunk", "lena", env=env))
        assert line.endswith(BUSY) and SECRET not in line
        assert f"`raft serve lena --port {port} --model {model}" in line
        assert f"--api-key REDACTED` (pid {first.pid})" in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert SECRET not in lock.read_text()  # what a kill -9 leaves behind

    # Two readers starting at once, the key as `--api-key=...` and from the environment:
    # the killed server's line is dropped, both of theirs kept.
    second, second_port = start_serve(env, *args, f"--api-key={SECRET}")
    third, third_port = start_serve({**env, "RAFT_SERVE_API_KEY": SECRET}, *args)
    try:
        wait_for_http(f"http://127.0.0.1:{second_port}/v1/models", second, timeout=120)
        wait_for_http(f"http://127.0.0.1:{third_port}/v1/models", third, timeout=120)
        record = lock.read_text()
        assert SECRET not in record and str(first.pid) not in record
        assert sorted(record.splitlines()) == sorted(
            [
                f"{second.pid} shared raft serve lena --port {second_port} --model {model} "
                "--no-memories --api-key=REDACTED",
                f"{third.pid} shared raft serve lena --port {third_port} --model {model} "
                "--no-memories",
            ]
        )
        line = one_error_line(run_cli("raft", "chunk", "lena", env=env))
        assert f"(pid {second.pid})" in line and f"(pid {third.pid})" in line
        assert SECRET not in line
    finally:
        for process in (second, third):
            process.terminate()
            process.wait(timeout=30)


# -- 12. .lock as a symlink ----------------------------------------------------------------


def test_a_symlinked_lock_file_is_refused_and_what_it_points_at_is_left_alone(lena):
    folder, env = lena
    victim = folder.parent.parent / "notes.txt"
    victim.write_bytes(b"my notes\n\x00\xff precious\n")
    (folder / ".lock").symlink_to(victim)

    line = one_error_line(run_cli("raft", "chunk", "lena", env=env))
    assert line == f"raft: error: {folder / '.lock'} is a symbolic link: " + (
        "remove it (raft keeps its lock there, and writes through no link)"
    )
    assert victim.read_bytes() == b"my notes\n\x00\xff precious\n"

    # A dangling link: following it would create the file it names.
    (folder / ".lock").unlink()
    (folder / ".lock").symlink_to(folder.parent.parent / "planted")
    line = one_error_line(run_cli("raft", "fetch", "lena", env=env))
    assert f"{folder / '.lock'} is a symbolic link" in line
    assert not (folder.parent.parent / "planted").exists()
    assert not (folder / "corpus.jsonl").exists()  # fetch did nothing without its lock


# -- Low: the Host check, the links on the pages --------------------------------------------


@pytest.fixture(scope="module")
def server(model, tmp_path_factory) -> Iterator[str]:
    """A keyless `raft serve` of the tiny persona; yields its base URL."""
    data = tmp_path_factory.mktemp("round3-lock") / "data"
    write_tiny_persona(data / "lena")
    env = {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(data / "none")}
    with raft_serve(env, "--model", model, "--no-memories") as url:
        yield url.removesuffix("/v1")


def status_for_host(url: str, host: str) -> int:
    """The status `GET /v1/models` gets with this exact Host header (sent on a raw socket,
    so that no client library tidies it)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        request = f"GET /v1/models HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode("latin-1"))
        head = sock.recv(64)
    return int(head.split()[1])


def test_a_host_header_that_is_not_host_and_port_is_refused(server):
    port = server.rsplit(":", 1)[1]
    for host in (
        "127.0.0.1:1@evil.example",
        f"localhost:{port}@evil.example",
        "127.0.0.1:80:80",
        f"127.0.0.1:{port}abc",
        "localhost/x",
        "[::1",
        "::1",
    ):
        assert status_for_host(server, host) == 400, host
    for host in (f"127.0.0.1:{port}", "localhost", "LOCALHOST.", f"[::1]:{port}", "[::1]"):
        assert status_for_host(server, host) == 200, host


LINKS = [
    ("Evil", "javascript:alert(document.domain)"),
    ("Evil upper", "JaVaScRiPt:alert(1)"),
    ("Evil padded", "  javascript:alert(1)"),
    ("Data", "data:text/html,<script>alert(1)</script>"),
    ("Relative", "/v1/models"),
    ("Bees", "https://lena.example.com/bees"),
]


def hostile_stream(route) -> None:
    """What `raft serve` streams when recalled documents carry these links (a feed or front
    matter may give any), fulfilled in the browser: serving memories needs a store."""
    memories = [
        {"chunk_id": f"c{n}", "title": title, "link": link, "date": "2020-03-01", "memory": "m"}
        for n, (title, link) in enumerate(LINKS)
    ]
    piece = {"choices": [{"index": 0, "delta": {"content": "A reply."}}]}
    events = [{"memories": memories}, piece]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("RAFT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def shown_links(scope) -> tuple[list[str], list[str]]:
    """(hrefs of the memories' links, texts of the memories' sources shown as text)."""
    links = scope.locator("li.memory a")
    texts = scope.locator("li.memory span.source")
    return (
        [links.nth(n).get_attribute("href") for n in range(links.count())],
        [texts.nth(n).inner_text() for n in range(texts.count())],
    )


def test_only_http_links_become_hrefs_on_the_chat_and_compare_pages(server, browser):
    from playwright.sync_api import expect

    expected = (["https://lena.example.com/bees"], [t for t, _ in LINKS[:-1]])
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/v1/chat/completions", hostile_stream)
        page.goto(server)
        expect(page.locator("#model")).to_have_value("lena")
        page.fill("#question", "How are the bees?")
        page.press("#question", "Enter")
        expect(page.locator("article[data-done='true']")).to_have_count(1)
        assert shown_links(page) == expected
        page.reload()  # the tab's history renders its memories again
        expect(page.locator("li.memory")).to_have_count(len(LINKS))
        assert shown_links(page) == expected

        page.goto(f"{server}/compare")
        expect(page.locator("section.column")).to_have_count(2)
        page.fill("#question", "How are the bees?")
        page.click("#send")
        expect(page.locator("section.column[data-done='true']")).to_have_count(2)
        for column in range(2):
            assert shown_links(page.locator("section.column").nth(column)) == expected
    finally:
        context.close()
