"""`raft serve` listens on loopback unless told otherwise, and enforces its key."""

from __future__ import annotations

import os
import subprocess

import httpx
import openai
import pytest

from tests.helpers import BIN, free_port, run_cli, wait_for_http

KEY = "sk-serve-safety-key"


@pytest.fixture(scope="module")
def served(generated):
    """`raft serve` of the ft:gen persona (its base model), with a key; yields (url, port)."""
    _, env, _ = generated
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "raft"), "serve", "lena", "--port", str(port)],
        env={**os.environ, **env, "RAFT_SERVE_API_KEY": KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_for_http(f"{url}/models", process)
        yield url, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the IPv4/IPv6 sockets listening on `port` (read from /proc)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for row in list(handle)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_serve_listens_on_loopback_only(served):
    _, port = served
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, little-endian hex


def test_requests_without_the_right_key_are_refused(served):
    url, _ = served
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="sk-wrong", max_retries=0).models.list()
    bare = httpx.post(f"{url}/chat/completions", json={"messages": []})
    assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
    models = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0).models.list()
    assert [m.id for m in models.data] == ["lena", "base"]  # no trained model yet


def test_serve_refuses_a_public_address_without_a_key(generated):
    _, env, _ = generated
    result = run_cli("raft", "serve", "lena", "--host", "0.0.0.0", "--no-memories", env=env)
    assert result.returncode == 2 and "without an API key" in result.stderr
    assert "Traceback" not in result.stderr
