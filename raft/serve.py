"""`raft serve`: the replica behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

`POST /v1/chat/completions` (plain and `stream: true` server-sent events) and
`GET /v1/models`. Each completion, and the first chunk of a stream, carries the memories
the replica used in an extra top-level field, `memories`.
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import Request  # FastAPI resolves handler annotations in module scope

from raft.conversation import Exchange
from raft.errors import UsageError
from raft.memories import Memory
from raft.replica import Replica


class BadRequest(Exception):
    """A request the API refuses with 400 and a JSON error."""


def memory_json(memory: Memory) -> dict[str, str]:
    return {
        "date": memory.date,
        "title": memory.title,
        "link": memory.link,
        "memory": memory.rephrased,
        "chunk_id": memory.chunk_id,
    }


def text_of(content: Any) -> str:
    """Message content as text: a string, or a list of text parts (vision parts refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in content
    ):
        return "".join(str(p.get("text", "")) for p in content)
    raise BadRequest("message content must be a string or a list of text parts")


def parse_conversation(body: Any) -> tuple[list[tuple[str, str]], str]:
    """(earlier question, answer) pairs and the new question from a chat request body."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise BadRequest("the body must be a JSON object with a `messages` list")
    turns = []
    for message in body["messages"]:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
        ):
            raise BadRequest("each message needs a role of system, user or assistant")
        if message["role"] != "system":  # the replica has its own system prompt
            turns.append((message["role"], text_of(message.get("content"))))
    roles = [role for role, _ in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2) + ["user"]:
        raise BadRequest("messages must alternate user and assistant and end with a user turn")
    texts = [text for _, text in turns]
    if not texts[-1].strip():
        raise BadRequest("the last user message is empty")
    return list(zip(texts[:-1:2], texts[1::2], strict=True)), texts[-1]


def sampling(replica: Replica, body: dict[str, Any]) -> Replica:
    """The replica with the request's temperature, max_tokens and seed, where given."""
    changes = {}
    for key, name, kind in [
        ("temperature", "temperature", float),
        ("max_tokens", "reply_tokens", int),
        ("max_completion_tokens", "reply_tokens", int),
        ("seed", "seed", int),
    ]:
        if body.get(key) is not None:
            try:
                changes[name] = kind(body[key])
            except (TypeError, ValueError):
                raise BadRequest(f"`{key}` must be a number") from None
    return replica.with_settings(**changes) if changes else replica


def create_app(replica: Replica, model_name: str, api_key: str | None = None) -> Any:
    from fastapi import FastAPI
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title=f"raft replica: {replica.target}", docs_url=None, redoc_url=None)

    def error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return JSONResponse(body, status_code=status)

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        if api_key:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), api_key.encode()):
                return error(
                    401, "missing or wrong API key", "invalid_request_error", "invalid_api_key"
                )
        return await call_next(request)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "raft"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = json.loads(await request.body())
            pairs, question = parse_conversation(body)
            active = sampling(replica, body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the body is not valid JSON", "invalid_request_error")
        except BadRequest as exc:
            return error(400, str(exc), "invalid_request_error")
        # Earlier questions recall their memories again (cached calls), so the history
        # carries the memory slots a training sample's history carries.
        history, memories, messages = await run_in_threadpool(prepare, active, pairs, question)
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.get("stream"):
            chunks = stream_chunks(active, messages, memories, ident, created, model_name)
            return StreamingResponse(chunks, media_type="text/event-stream")
        reply = await run_in_threadpool(lambda: "".join(active.stream(messages)).strip())
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
            "memories": [memory_json(m) for m in memories],
        }

    return app


def prepare(
    replica: Replica, pairs: list[tuple[str, str]], question: str
) -> tuple[list[Exchange], list[Memory], list[dict[str, str]]]:
    history = replica.recall_history(pairs)
    memories = replica.remember(question, history)
    return history, memories, replica.messages(history, question, memories)


def stream_chunks(
    replica: Replica,
    messages: list[dict[str, str]],
    memories: list[Memory],
    ident: str,
    created: int,
    model_name: str,
) -> Iterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `[DONE]`."""

    def event(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""}, memories=[memory_json(m) for m in memories])
    for piece in replica.stream(messages):
        yield event({"content": piece})
    yield event({}, "stop")
    yield "data: [DONE]\n\n"


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def serve(replica: Replica, model_name: str, host: str, port: int, api_key: str | None) -> None:
    """Run the server until interrupted."""
    import uvicorn

    from raft.console import err

    if host not in LOOPBACK and not api_key:
        raise UsageError(
            f"refusing to serve on {host} without an API key: pass --api-key or set "
            "RAFT_SERVE_API_KEY (or bind to 127.0.0.1)"
        )
    err.print(
        f"serving {replica.target} ({replica.label}) on http://{host}:{port}/v1 as model "
        f"{model_name!r}" + ("; API key required" if api_key else ""),
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(create_app(replica, model_name, api_key), host=host, port=port, log_level="warning")
