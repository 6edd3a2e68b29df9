"""`raft serve --model local` with memories: the chat model and the memory generator are
one SmolLM2 in one process, and concurrent requests must take turns on it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.helpers import raft_serve
from tests.tiny_persona import build_store, write_finetune


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("serve-base") / "data"
    env = build_store(data)
    # The base model follows the training data's spec: extractive memories, which pass the
    # gate that drops nearly all of SmolLM2's rephrasings of the tiny persona.
    write_finetune(data / "lena", memory_style="extractive")
    with raft_serve(env, "--model", "local") as url:
        yield url


def test_concurrent_requests_on_the_shared_base_model_both_answer(server):
    questions = ["How did you start keeping bees on a roof?", "Why does your bread take so long?"]

    def ask(seed_and_question: tuple[int, str]) -> httpx.Response:
        seed, question = seed_and_question
        body = {
            "model": "lena",
            "messages": [{"role": "user", "content": question}],
            "max_tokens": 24,
            "seed": seed,
        }
        return httpx.post(f"{server}/chat/completions", json=body, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        responses = list(pool.map(ask, enumerate(questions, start=1)))

    for response in responses:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["object"] == "chat.completion" and body["model"] == "lena"
        (choice,) = body["choices"]
        assert choice["finish_reason"] == "stop"
        assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
        assert isinstance(body["memories"], list) and body["memories"]  # the generator ran
