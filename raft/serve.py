"""`raft serve`: the replica behind an OpenAI-compatible HTTP API (FastAPI + uvicorn).

`POST /v1/chat/completions` (plain and `stream: true` server-sent events) and
`GET /v1/models`. A request's `model` picks the persona's default replica, `base`, or a
trained model of the registry by id (`raft.replica.Replicas`); `memories: false` answers
without recalled writing. Each completion, and the first chunk of a stream, carries the
memories the replica used in an extra top-level field, `memories`. The web pages
(`raft.web`) are served beside the API and call it like any client.

The server is meant to face clients it does not trust: bodies, messages and sampling
settings have caps; completions run in their own bounded pool, so `/v1/models` never waits
for them and a full queue answers 503 at once; a client that leaves stops its generation;
only JSON bodies and known Host names are served, so that, even without a key, a web page
can neither post to the server nor read its replies through DNS rebinding. Every error is
an OpenAI-shaped JSON error, in a stream too.

This module holds the routes; the request checks, the guard, the errors, and a
completion's work, pool and reply are in `raft.serving`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request  # FastAPI resolves handler annotations in module scope

from raft.errors import RaftError, UsageError
from raft.replica import Replica, Replicas
from raft.serving.completion import (
    CompletionPool,
    Stopped,
    memory_json,
    stream_chunks,
    wait_for_disconnect,
)
from raft.serving.errors import ApiError, error_body, failure_json
from raft.serving.guard import ANY_ADDRESS, LOOPBACK, Guard
from raft.serving.request import (
    MAX_BODY,
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_REPLY_TOKENS,
    model_name,
    parse_conversation,
    parse_json,
    read_body,
    sampling,
)

QUEUE = 16  # completions running or waiting at once


def create_app(
    replicas: Replicas,
    api_key: str | None = None,
    *,
    max_body: int = MAX_BODY,
    queue: int = QUEUE,
    allow_hosts: Iterable[str] = (),
    max_messages: int = MAX_MESSAGES,
    max_message_chars: int = MAX_MESSAGE_CHARS,
    max_reply_tokens: int = MAX_REPLY_TOKENS,
    pages: Any = None,
) -> Any:
    """The API app, with the web pages when `pages` (a `raft.web.app.Pages`) is given.
    Limits: `max_body` bytes per request; `queue` completions running or waiting at once
    (more get 503); Host names `allow_hosts` besides the loopback names (`*`: any);
    `max_messages` messages of at most `max_message_chars` characters; a `max_tokens` of at
    most `max_reply_tokens`."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.background import BackgroundTask
    from starlette.exceptions import HTTPException

    pool = CompletionPool(queue)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown()

    app = FastAPI(
        title=f"raft replica: {replicas.target}", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    public = pages.public if pages is not None else None
    app.add_middleware(Guard, api_key=api_key, hosts=[*LOOPBACK, *allow_hosts], public=public)

    @app.exception_handler(ApiError)
    async def refused(_request: Request, exc: ApiError) -> JSONResponse:
        body = error_body(str(exc), exc.kind, exc.code)
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        body = error_body(str(exc.detail), "invalid_request_error", None)
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def failed(_request: Request, exc: Exception) -> JSONResponse:
        status, body = failure_json(exc)
        return JSONResponse(body, status_code=status)

    app.add_exception_handler(RaftError, failed)  # handled here, not re-raised as a 500

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:  # async: answered in the event loop, never queued
        served = await asyncio.to_thread(replicas.models)  # reads the registry
        return {
            "object": "list",
            "data": [
                {
                    "id": m.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": "raft",
                    "label": m.label,
                    "memories": m.memories,
                }
                for m in served
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = parse_json(await read_body(request, max_body))
        pairs, question = parse_conversation(body, max_messages, max_message_chars)
        changes = sampling(body, max_reply_tokens)
        name = await asyncio.to_thread(model_name, body, replicas)

        def choose() -> Replica:
            replica = replicas.get(name)
            return replica.with_settings(**changes) if changes else replica

        completion = pool.start(choose, pairs, question)
        gone = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            event, memories = await completion.next(gone), []
            if event[0] == "memories":
                memories, event = event[1], await completion.next(gone)
            # Until the first piece, a failure is an HTTP error rather than a stream event.
            if event[0] == "error":
                raise event[1]
            ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            if body.get("stream"):
                # From here Starlette cancels the stream when the client leaves.
                chunks = stream_chunks(completion, event, memories, ident, created, name)
                return StreamingResponse(
                    chunks,
                    media_type="text/event-stream",
                    background=BackgroundTask(completion.cancel),
                )
            pieces = []
            while event[0] == "piece":
                pieces.append(event[1])
                event = await completion.next(gone)
            if event[0] == "error":
                raise event[1]
        except Stopped:  # nobody is left to read an answer
            return JSONResponse(error_body("the client left", "invalid_request_error"), 499)
        finally:
            gone.cancel()
        return {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(pieces).strip()},
                    "finish_reason": "stop",
                }
            ],
            "memories": [memory_json(m) for m in memories],
        }

    if pages is not None:
        pages.mount(app)
    return app


def serve(
    replicas: Replicas,
    host: str,
    port: int,
    api_key: str | None,
    *,
    max_body: int = MAX_BODY,
    queue: int = QUEUE,
    allow_hosts: Iterable[str] = (),
    pages: Any = None,
) -> None:
    """Run the server until interrupted."""
    import uvicorn

    from raft.console import err

    if host not in LOOPBACK and not api_key:
        raise UsageError(
            f"refusing to serve on {host} without an API key: pass --api-key or set "
            "RAFT_SERVE_API_KEY (or bind to 127.0.0.1)"
        )
    hosts = [*allow_hosts, *([] if host in ANY_ADDRESS else [host])]
    default = replicas.get(replicas.name)
    shown = f"[{host}]" if ":" in host else host
    err.print(
        f"serving {replicas.target} ({default.label}) on http://{shown}:{port}/v1 as model "
        f"{replicas.name!r}" + ("; API key required" if api_key else ""),
        highlight=False,
        soft_wrap=True,
    )
    if pages is not None:
        err.print(f"web page: http://{shown}:{port}/", highlight=False, soft_wrap=True)
    if host in ANY_ADDRESS and not allow_hosts:
        err.print(
            "only Host names 127.0.0.1, localhost and [::1] are served: name the others "
            "clients use with --allow-host NAME (or --allow-host '*')",
            highlight=False,
            soft_wrap=True,
        )
    app = create_app(
        replicas,
        api_key,
        max_body=max_body,
        queue=queue,
        allow_hosts=hosts,
        pages=pages,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning")
