"""Backends against the real models: SmolLM2 via llama.cpp (in-process and over HTTP), MiniLM."""

from __future__ import annotations

import threading

import numpy as np
import pytest

# At module level: FastAPI resolves the handlers' string annotations in these globals.
from fastapi import Request

from raft.backends.cache import Cache
from raft.backends.embed import make_embedder
from raft.backends.llm import (
    CachedLLM,
    LlamaCppLLM,
    OpenAILLM,
    Reply,
    StructuredOutputError,
    Usage,
    complete_json,
    make_llm,
)
from raft.backends.models import smollm2_gguf
from raft.backends.tokens import count_tokens
from raft.concurrency import bounded_map

VERDICT = {
    "type": "object",
    "properties": {
        "useful": {"type": "boolean"},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["useful", "reason"],
    "additionalProperties": False,
}
QUESTION = [
    {"role": "system", "content": "You judge whether a memory helps answer a question."},
    {
        "role": "user",
        "content": "Question: Why do you repair old radios?\n"
        "Memory: I learned soldering from my grandfather in 1998.\nIs the memory useful?",
    },
]


def test_local_llm_returns_json_matching_the_schema(tmp_path):
    llm = make_llm("local", Cache(tmp_path / "cache.sqlite"))
    verdict = complete_json(llm, QUESTION, VERDICT, max_tokens=80)
    assert set(verdict) == {"useful", "reason"}
    assert isinstance(verdict["useful"], bool)
    assert llm.calls == 1  # the grammar made the first reply valid: no repair round


def test_identical_call_is_served_from_the_cache_across_processes(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = make_llm("local", Cache(path))
    text = first.complete(QUESTION, max_tokens=24)
    assert first.calls == 1
    again = first.complete(QUESTION, max_tokens=24)
    assert (again, first.calls) == (text, 1)

    reopened = make_llm("local", Cache(path))  # a later run of the same stage
    assert reopened.complete(QUESTION, max_tokens=24) == text
    assert reopened.calls == 0
    reopened.complete(QUESTION, max_tokens=25)  # any parameter that changes output is in the key
    assert reopened.calls == 1


def test_wrappers_of_one_loaded_model_share_its_lock(tmp_path):
    other = tmp_path / "other.gguf"
    other.write_bytes(b"not a model")  # never loaded: constructing a wrapper loads nothing
    adapter = tmp_path / "adapter.gguf"
    adapter.write_bytes(b"not an adapter")
    chat, generator = LlamaCppLLM(smollm2_gguf()), LlamaCppLLM(smollm2_gguf())
    assert chat._lock is generator._lock
    assert LlamaCppLLM(smollm2_gguf(), lora_path=adapter)._lock is not chat._lock
    assert LlamaCppLLM(other)._lock is not chat._lock


def test_two_wrappers_of_one_model_never_run_completions_at_once(monkeypatch):
    chat, generator = LlamaCppLLM(smollm2_gguf()), LlamaCppLLM(smollm2_gguf())
    llama = chat.llama
    assert generator.llama is llama  # one llama.cpp context behind both
    events: list[str] = []
    real = llama.create_chat_completion

    def recorded(**kwargs):
        events.append("enter")
        try:
            return real(**kwargs)
        finally:
            events.append("exit")

    monkeypatch.setattr(llama, "create_chat_completion", recorded)
    start = threading.Barrier(2)
    replies: dict[str, str] = {}

    def ask(name: str, llm: LlamaCppLLM, question: str) -> None:
        start.wait()
        replies[name] = llm.complete([{"role": "user", "content": question}], max_tokens=24).text

    threads = [
        threading.Thread(target=ask, args=("chat", chat, "Tell me about bees.")),
        threading.Thread(target=ask, args=("generator", generator, "Tell me about bread.")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert events == ["enter", "exit", "enter", "exit"]
    assert set(replies) == {"chat", "generator"}
    assert all(isinstance(text, str) and text.strip() for text in replies.values())


class ScriptedLLM:
    """A real LLM implementation that replies from a script, to drive the repair path."""

    model_id = "scripted"
    concurrency = 1

    def __init__(self, replies):
        self.replies = list(replies)
        self.seen = []

    def complete(self, messages, **params):
        self.seen.append(messages)
        return Reply(self.replies.pop(0), Usage(1))


def test_invalid_json_gets_one_repair_round():
    inner = ScriptedLLM(
        ['Sure! {"useful": "yes"}', '```json\n{"useful": true, "reason": "r"}\n```']
    )
    verdict = complete_json(CachedLLM(inner), QUESTION, VERDICT)
    assert verdict == {"useful": True, "reason": "r"}
    repair = inner.seen[1]
    assert repair[-2] == {"role": "assistant", "content": 'Sure! {"useful": "yes"}'}
    assert "not valid JSON for the schema" in repair[-1]["content"]


def test_still_invalid_after_repair_is_a_clear_error():
    inner = ScriptedLLM(["no", "still no"])
    with pytest.raises(StructuredOutputError, match="scripted returned no valid JSON"):
        complete_json(CachedLLM(inner), QUESTION, VERDICT)


def test_openai_compatible_server_path(llama_server, tmp_path):
    llm = make_llm(f"openai:smollm2@{llama_server}", Cache(tmp_path / "cache.sqlite"))
    text = llm.complete(QUESTION, max_tokens=16)
    assert isinstance(text, str) and text.strip()
    verdict = complete_json(llm, QUESTION, VERDICT, max_tokens=80)
    assert isinstance(verdict["useful"], bool)
    calls = llm.calls
    assert complete_json(llm, QUESTION, VERDICT, max_tokens=80) == verdict
    assert llm.calls == calls  # cached


def test_openai_compatible_calls_run_concurrently_in_order(llama_server, tmp_path):
    llm = make_llm(f"openai:smollm2@{llama_server}", Cache(tmp_path / "cache.sqlite"))
    prompts = [[{"role": "user", "content": f"Say the number {n}."}] for n in range(4)]
    replies = bounded_map(lambda p: llm.complete(p, max_tokens=8), prompts, llm.concurrency)
    assert llm.calls == 4
    assert replies == [llm.complete(p, max_tokens=8) for p in prompts]  # same order, all cached
    assert llm.calls == 4


def test_unreachable_server_fails_with_the_backend_named(tmp_path, monkeypatch):
    monkeypatch.setenv("RAFT_RETRIES", "1")
    monkeypatch.setenv("RAFT_TIMEOUT", "2")
    llm = make_llm("openai:m@http://127.0.0.1:9/v1")
    with pytest.raises(Exception, match=r"openai:m@http://127.0.0.1:9/v1: APIConnectionError"):
        llm.complete(QUESTION)


def test_embeddings_place_related_sentences_closer(tmp_path):
    embedder = make_embedder("local", Cache(tmp_path / "cache.sqlite"))
    vectors = embedder.embed(
        [
            "I repair old valve radios in my workshop.",
            "Fixing vintage radio sets is my hobby.",
            "The tax office closes at five on Fridays.",
        ]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    related, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert related > unrelated + 0.2


def test_embedding_cache_embeds_only_new_texts(tmp_path):
    path = tmp_path / "cache.sqlite"
    first = make_embedder("local", Cache(path))
    a = first.embed(["alpha text", "beta text"])
    again = make_embedder("local", Cache(path))
    b = again.embed(["beta text", "gamma text", "alpha text"])
    assert again.texts_embedded == 1  # only "gamma text"
    assert np.allclose(b[0], a[1]) and np.allclose(b[2], a[0])


def test_token_counts_work_offline():
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0


def chat_server(refuse: str | None, bodies: list[dict]):
    """An OpenAI-compatible chat endpoint that records request bodies; it answers 400 about
    a field named `refuse` when a request carries it, as strict servers do."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        bodies.append(body)
        if refuse in body:
            error = {"message": f"Unrecognized request argument supplied: {refuse}"}
            return JSONResponse({"error": error}, 400)
        message = {"role": "assistant", "content": "A reply."}
        usage = {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}
        usage["prompt_tokens_details"] = {"cached_tokens": 20}
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
        }

    return app


@pytest.mark.parametrize("refuse", [None, "cache_prompt"])
def test_a_server_is_asked_to_keep_its_prompt_cache_unless_it_refuses(refuse):
    from tests.helpers import serve_app

    bodies: list[dict] = []
    with serve_app(chat_server(refuse, bodies)) as url:
        llm = CachedLLM(OpenAILLM("any", url))
        assert llm.complete(QUESTION) == "A reply."
        llm.complete([{"role": "user", "content": "And another?"}])
    sent = [body.get("cache_prompt") for body in bodies]
    # A refusal costs one request more, once: later requests go without the field.
    assert sent == ([True, True] if refuse is None else [True, None, None])
    # The server's own count of cached prompt tokens is what the call cost.
    assert (llm.usage.calls, llm.usage.prompt, llm.usage.cached) == (2, 60, 40)
    assert llm.usage.evaluated == 20 and llm.usage.completion == 6
