"""`raft chat` and `raft serve`: the real openai client against the replica on 127.0.0.1,
with the tiny persona's store, the local SmolLM2 and a LoRA adapter trained for two steps."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.helpers import raft_serve, run_cli
from tests.tiny_persona import INTERVIEWS, add_lora, build_store

KEY = "sk-serve-test-key"
QUESTION = "How did you start keeping bees on a roof?"
ESSAY_LINKS = "https://lena.example.com/"


@pytest.fixture(scope="module")
def persona(tmp_path_factory, extractive_lora):
    data = tmp_path_factory.mktemp("serve") / "data"
    env = build_store(data)
    run = add_lora(data / "lena", extractive_lora)  # extractive: memories that pass the gate
    return data / "lena", env, run


@pytest.fixture(scope="module")
def server(persona):
    _, env, run = persona
    with raft_serve({**env, "RAFT_SERVE_API_KEY": KEY}, "--model", run) as url:
        yield url


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=300)


def test_stream_and_completion_carry_the_same_reply_and_memories(server):
    messages = [{"role": "user", "content": QUESTION}]
    chunks = list(
        client(server).chat.completions.create(model="lena", messages=messages, stream=True, seed=1)
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 1  # delivered as it was generated
    streamed_memories = chunks[0].model_extra["memories"]

    reply = client(server).chat.completions.create(model="lena", messages=messages, seed=1)
    text = reply.choices[0].message.content
    assert text and text == "".join(pieces).strip()
    memories = reply.model_extra["memories"]
    assert memories == streamed_memories and memories
    for memory in memories:
        assert memory["link"].startswith(ESSAY_LINKS) or memory["chunk_id"].startswith("interview")
        assert memory["memory"] and memory["date"][:2] == "20"


def test_history_is_accepted_and_models_are_listed(server, persona):
    first = INTERVIEWS["transcripts/2021-06-01-garden-radio.json"]["exchanges"][0]
    reply = client(server).chat.completions.create(
        model="lena",
        messages=[
            {"role": "system", "content": "ignored: the replica has its own system prompt"},
            {"role": "user", "content": first[0]},
            {"role": "assistant", "content": first[1]},
            {"role": "user", "content": "And what about the honey?"},
        ],
        max_tokens=40,
    )
    assert reply.choices[0].message.content
    _, _, run = persona
    listed = client(server).models.list().data
    assert [m.id for m in listed] == ["lena", "base", run]  # the default, base, the registry
    assert [m.model_extra["label"] for m in listed] == [run, "local", run]
    with pytest.raises(openai.NotFoundError, match="no model 'gpt-4o' is served here"):
        client(server).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hello?"}]
        )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"messages": "hello"}', "`messages` list"),
        (b'{"messages": [{"role": "assistant", "content": "hi"}]}', "end with a user turn"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', "number"),
    ],
)
def test_malformed_bodies_get_a_400_json_error(server, body, problem):
    response = httpx.post(
        f"{server}/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert problem in error["message"] and error["type"] == "invalid_request_error"


def test_chat_once_prints_only_the_reply_and_memories_on_stderr(persona, server):
    _, env, run = persona
    result = run_cli(
        "raft", "chat", "lena", "--model", run, "--seed", "1", "--once", QUESTION, env=env
    )
    assert result.returncode == 0, result.stderr
    served = client(server).chat.completions.create(
        model="lena", messages=[{"role": "user", "content": QUESTION}], seed=1
    )
    # chat and serve are one path: the same prompt, hence the same (cached) reply.
    assert result.stdout == served.choices[0].message.content + "\n"
    memory_lines = [line for line in result.stderr.splitlines() if line.startswith("[memory ")]
    assert len(memory_lines) == len(served.model_extra["memories"]) > 0


def test_chat_before_a_date_recalls_only_earlier_writing(persona):
    _, env, _ = persona
    result = run_cli(
        "raft",
        "chat",
        "lena",
        "--model",
        "local",
        "--before",
        "2020-06-01",
        "--max-tokens",
        "30",
        "--once",
        "Tell me about bees and bread.",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    dates = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("[memory ")]
    assert dates and all(d < "2020-06-01" for d in dates)


def test_chat_without_a_store_says_what_to_run(data_dir):
    (data_dir / "empty").mkdir()
    result = run_cli("raft", "chat", "empty", "--once", "Hello?")
    assert result.returncode == 2 and "run `raft embed empty` first" in result.stderr
