"""Faults of an OpenAI-compatible LLM server, met by the real openai client on 127.0.0.1:
retries with backoff, then one clear error, and nothing finished is lost."""

from __future__ import annotations

import pytest

from raft.backends.cache import Cache
from raft.backends.llm import CachedLLM, OpenAILLM, StructuredOutputError, complete_json
from raft.errors import RaftError
from tests.helpers import run_cli, serve_app
from tests.robustness.faulty_llm import FaultyLLM
from tests.tiny_persona import build_store

MESSAGES = [{"role": "user", "content": "Say something."}]
SCHEMA = {
    "type": "object",
    "properties": {"useful": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["useful", "reason"],
}


@pytest.fixture
def faulty(monkeypatch):
    monkeypatch.setenv("RAFT_RETRIES", "2")
    monkeypatch.setenv("RAFT_TIMEOUT", "1")
    server = FaultyLLM()
    with serve_app(server.app()) as url:
        server.url = url
        yield server


def llm(server: FaultyLLM, cache: Cache | None = None) -> CachedLLM:
    return CachedLLM(OpenAILLM("faulty", server.url), cache)


def test_429_with_retry_after_is_retried(faulty):
    faulty.script = ["429", "429"]
    assert llm(faulty).complete(MESSAGES) == faulty.reply
    assert faulty.calls == 3


def test_a_hang_past_the_timeout_is_retried(faulty):
    faulty.script = ["hang"]
    assert llm(faulty).complete(MESSAGES) == faulty.reply
    assert faulty.calls == 2


def test_persistent_server_errors_fail_with_one_clear_error(faulty):
    faulty.script = ["500"] * 10
    with pytest.raises(RaftError) as failure:
        llm(faulty).complete(MESSAGES)
    assert faulty.calls == 3  # the call and two retries
    assert "openai:faulty@" in str(failure.value) and "InternalServerError" in str(failure.value)


def test_invalid_json_gets_one_repair_round_then_a_clear_error(faulty):
    faulty.script = ["badjson", "badjson"]
    with pytest.raises(StructuredOutputError) as failure:
        complete_json(llm(faulty), MESSAGES, SCHEMA)
    assert faulty.calls == 2 and "after a repair attempt" in str(failure.value)
    faulty.script = ["badjson"]
    assert complete_json(llm(faulty), MESSAGES, SCHEMA) == {"useful": True, "reason": "ok"}


def test_a_stream_cut_mid_way_raises_and_caches_nothing(faulty, tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    faulty.script = ["cut"]
    with pytest.raises(RaftError):
        "".join(llm(faulty, cache).stream(MESSAGES))
    assert cache.count("chat") == 0
    assert "".join(llm(faulty, cache).stream(MESSAGES)).strip() == faulty.reply
    assert cache.count("chat") == 1


PLANTED_KEY = "sk-planted-0123456789abcdef"


def test_ft_gen_that_fails_midway_keeps_every_finished_call(faulty, tmp_path):
    env = build_store(tmp_path / "data")
    env |= {
        "RAFT_GENERATOR": f"openai:faulty@{faulty.url}",
        "RAFT_RETRIES": "0",
        "OPENAI_API_KEY": PLANTED_KEY,
    }
    faulty.script = ["ok"] * 5 + ["500"] * 1000
    failed = run_cli("raft", "ft:gen", "lena", "-k", "2", "--memories", "rephrased", env=env)
    assert failed.returncode == 1 and "openai:faulty@" in failed.stderr
    assert "Traceback" not in failed.stderr
    cache = Cache(tmp_path / "data" / "lena" / "cache.sqlite")
    kept = cache.count("chat")
    assert kept >= 5  # the calls answered before the failure

    faulty.script, before = [], faulty.calls
    done = run_cli("raft", "ft:gen", "lena", "-k", "2", "--memories", "rephrased", env=env)
    assert done.returncode == 0, done.stderr
    new_calls = faulty.calls - before
    assert cache.count("chat") == kept + new_calls  # nothing answered was asked again

    # Benchmark, scores and report through the same server, with the same key.
    outputs = [failed, done]
    for program, *args in (
        ["raft", "bench:setup", "lena"],
        ["ratf", "run", "lena", "--replica", f"base=openai:faulty@{faulty.url},memories=off"],
        ["ratf", "score", "lena"],
        ["ratf", "report", "lena"],
    ):
        outputs.append(run_cli(program, *args, env=env))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
    assert list((tmp_path / "data" / "lena" / "ratf").glob("runs/*/report.md"))

    # The key reached the server, but no message and no written file holds it.
    for result in outputs:
        assert PLANTED_KEY not in result.stderr + result.stdout
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert PLANTED_KEY.encode() not in path.read_bytes(), path
