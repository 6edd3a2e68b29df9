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
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from typing import Any

from fastapi import Request  # FastAPI resolves handler annotations in module scope

from raft.backends.spec import redact
from raft.conversation import Exchange
from raft.errors import RaftError, UsageError
from raft.memories import Memory
from raft.replica import Replica, Replicas

MAX_BODY = 1_000_000  # bytes of a request body
QUEUE = 16  # completions running or waiting at once
MAX_MESSAGES = 200  # messages of one request
MAX_MESSAGE_CHARS = 100_000  # characters of one message
MAX_REPLY_TOKENS = 4096  # the largest `max_tokens` a request may ask for
SEED_RANGE = (-(2**63), 2**63 - 1)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ANY_ADDRESS = {"0.0.0.0", "::", ""}
# A Host header as RFC 9110 has it: a DNS name or IPv4 address, or an IPv6 address in
# brackets, then an optional port of digits; nothing else (no userinfo, no path).
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::[0-9]{1,5})?")


class ApiError(Exception):
    """A request the API refuses, answered with `status` and an OpenAI-shaped JSON error."""

    status = 400
    kind = "invalid_request_error"

    def __init__(self, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    """A request the API refuses with 400 and a JSON error."""


class NotFound(ApiError):
    status = 404


class TooLarge(ApiError):
    status = 413


class Overloaded(ApiError):
    status = 503
    kind = "server_error"


class Stopped(Exception):
    """The completion was stopped: its client left, or the server is shutting down."""


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def failure_json(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """Status and JSON error for a failed completion: 502 when the backend failed (the
    message names it), 500 for anything else (no internals shown)."""
    if isinstance(exc, ApiError):
        return exc.status, error_body(str(exc), exc.kind, exc.code)
    if isinstance(exc, RaftError):
        message = f"the backend failed: {redact(str(exc))}"
        return 502, error_body(message, "server_error", "backend_error")
    return 500, error_body("internal server error", "server_error", "internal_error")


def memory_json(memory: Memory) -> dict[str, str]:
    return {
        "date": memory.date,
        "title": memory.title,
        "link": memory.link,
        "memory": memory.rephrased,
        "chunk_id": memory.chunk_id,
    }


def text_of(content: Any, max_chars: int = MAX_MESSAGE_CHARS) -> str:
    """Message content as text: a string, or a list of text parts (vision parts refused)."""
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text", ""), str)
        for p in content
    ):
        content = "".join(p.get("text", "") for p in content)
    if not isinstance(content, str):
        raise BadRequest("message content must be a string or a list of text parts")
    if len(content) > max_chars:
        raise BadRequest(f"a message is longer than {max_chars} characters")
    try:
        content.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a `\ud800` escape
        raise BadRequest("message content is not valid Unicode") from None
    return content


def parse_conversation(
    body: Any, max_messages: int = MAX_MESSAGES, max_chars: int = MAX_MESSAGE_CHARS
) -> tuple[list[tuple[str, str]], str]:
    """(earlier question, answer) pairs and the new question from a chat request body."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise BadRequest("the body must be a JSON object with a `messages` list")
    if len(body["messages"]) > max_messages:
        raise BadRequest(f"too many messages: at most {max_messages}")
    turns = []
    for message in body["messages"]:
        if not isinstance(message, dict) or message.get("role") not in (
            "system",
            "user",
            "assistant",
        ):
            raise BadRequest("each message needs a role of system, user or assistant")
        text = text_of(message.get("content"), max_chars)
        if message["role"] != "system":  # the replica has its own system prompt
            turns.append((message["role"], text))
    roles = [role for role, _ in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2) + ["user"]:
        raise BadRequest("messages must alternate user and assistant and end with a user turn")
    texts = [text for _, text in turns]
    if not texts[-1].strip():
        raise BadRequest("the last user message is empty")
    return list(zip(texts[:-1:2], texts[1::2], strict=True)), texts[-1]


def setting(body: dict[str, Any], key: str, low: float, high: float, integer: bool) -> Any:
    """The request's value of a sampling setting, or None; refused unless a finite number
    (an integer where `integer`) from `low` to `high`. Booleans and strings are refused."""
    value = body.get(key)
    if value is None:
        return None
    kind = "an integer" if integer else "a number"
    wanted = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, wanted):
        raise BadRequest(f"`{key}` must be {kind} from {low} to {high}")
    if (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise BadRequest(f"`{key}` must be {kind} from {low} to {high}")
    return value


def sampling(body: dict[str, Any], max_reply_tokens: int = MAX_REPLY_TOKENS) -> dict[str, Any]:
    """The replica settings a request changes: temperature, max_tokens, seed, and
    `memories: false` (this project's own field) to answer without recalled writing."""
    changes: dict[str, Any] = {}
    for key, name, low, high, integer in [
        ("temperature", "temperature", 0, 2, False),
        ("max_tokens", "reply_tokens", 1, max_reply_tokens, True),
        ("max_completion_tokens", "reply_tokens", 1, max_reply_tokens, True),
        ("seed", "seed", *SEED_RANGE, True),
    ]:
        value = setting(body, key, low, high, integer)
        if value is not None:
            changes[name] = float(value) if name == "temperature" else value
    for flag in ("stream", "memories"):
        if body.get(flag) not in (None, True, False):
            raise BadRequest(f"`{flag}` must be true or false")
    if body.get("memories") is False:
        changes["memories"] = False
    return changes


def model_name(body: dict[str, Any], replicas: Replicas) -> str:
    """The served model a request names (default: the persona's); 404 for any other."""
    name = body.get("model")
    if name is None:
        return replicas.name
    if not isinstance(name, str):
        raise BadRequest("`model` must be a string")
    known = [m.id for m in replicas.models()]
    if name not in known:
        message = f"no model {name[:100]!r} is served here (known: {', '.join(known)})"
        raise NotFound(message, "model_not_found")
    return name


def host_name(header: str) -> str | None:
    """The name in a Host header, without port, brackets or a trailing dot, lower case;
    None for anything but `host[:port]` (`127.0.0.1:1@evil.example` is not 127.0.0.1)."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return None
    return match["ipv6"] or match["name"].rstrip(".")


def allowed_name(name: str) -> str:
    """A --host or --allow-host value as `host_name` reads a Host header: `::1` (as
    --host takes it) and `[::1]` are one name; `*` stays `*`."""
    bare_ipv6 = name.count(":") > 1 and not name.startswith("[")
    return host_name(f"[{name}]" if bare_ipv6 else name) or name


class Guard:
    """ASGI middleware that runs before any route: the Host allowlist (against DNS
    rebinding), the API key, and JSON-only POST bodies (a web page can post `text/plain`
    without asking the browser first, but not `application/json`)."""

    def __init__(
        self,
        app: Any,
        api_key: str | None,
        hosts: Iterable[str],
        public: Callable[[str, str], bool] | None = None,
    ):
        self.app = app
        self.api_key = api_key
        self.hosts = {allowed_name(h) for h in hosts}
        self.public = public  # (method, path) served without the key: pages, the blind test

    def refusal(self, scope: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        from starlette.datastructures import Headers

        headers = Headers(scope=scope)
        name = host_name(headers.get("host", ""))
        if name is None or ("*" not in self.hosts and name not in self.hosts):
            message = "this Host is not served (add it with `raft serve --allow-host NAME`)"
            return 400, error_body(message, "invalid_request_error", "host_not_allowed")
        if self.api_key and not (self.public and self.public(scope["method"], scope["path"])):
            given = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                message = "missing or wrong API key"
                return 401, error_body(message, "invalid_request_error", "invalid_api_key")
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["method"] == "POST" and media != "application/json":
            message = "the body must be sent as Content-Type: application/json"
            return 415, error_body(message, "invalid_request_error", "unsupported_media_type")
        return None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from starlette.responses import JSONResponse

        refused = self.refusal(scope) if scope["type"] == "http" else None
        if refused is None:
            await self.app(scope, receive, send)
        else:  # closing the connection spares reading whatever body was sent
            response = JSONResponse(refused[1], refused[0], headers={"Connection": "close"})
            await response(scope, receive, send)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read piece by piece and refused past `limit` bytes, so that a
    huge body (declared, chunked or lying) is never held whole."""
    too_large = TooLarge(
        f"the body is larger than {limit} bytes",
        "request_too_large",
        {"Connection": "close"},  # stop reading the rest
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_large
    return bytes(body)


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep
        raise BadRequest("the body is not valid JSON") from None


def prepare(
    replica: Replica,
    pairs: list[tuple[str, str]],
    question: str,
    stop: threading.Event | None = None,
) -> tuple[list[Exchange], list[Memory], list[dict[str, str]]]:
    """Recall and render: what a training sample shows, without the answer.

    Earlier questions recall their memories again (cached calls), so the history carries
    the slots a training sample's history carries; but only those of the newest exchanges
    that fit the budgets without any slot: slots only add tokens, so an older exchange
    could never be packed, and recalling it would be wasted calls.
    """
    plain = [Exchange(q, a) for q, a in pairs]
    window = (len(replica.messages(plain, question, [])) - 2) // 2  # minus system, question
    history = plain[: len(plain) - window]
    for earlier, answer in pairs[len(plain) - window :]:
        if stop is not None and stop.is_set():
            raise Stopped
        history.append(Exchange(earlier, answer, replica.remember(earlier, history)))
    if stop is not None and stop.is_set():
        raise Stopped
    memories = replica.remember(question, history)
    return history, memories, replica.messages(history, question, memories)


class Completion:
    """One completion in the completions pool: recall, render, then the reply piece by
    piece, handed to the event loop through `events` as (kind, value): ("memories", list),
    ("piece", text)..., then ("end", None) or ("error", exception). Setting `stop` ends it
    between two steps (the backend stream is closed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.stop = threading.Event()

    def put(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: nobody is listening
            self.stop.set()

    def run(
        self, choose: Callable[[], Replica], pairs: list[tuple[str, str]], question: str
    ) -> None:
        """`choose` gives the replica, here in the pool: opening one loads a model."""
        try:
            replica = choose()
            _, memories, messages = prepare(replica, pairs, question, self.stop)
            self.put("memories", memories)
            stopped = False
            with closing(replica.stream(messages)) as pieces:
                for piece in pieces:
                    stopped = self.stop.is_set()
                    if stopped:
                        break
                    self.put("piece", piece)
            if stopped:
                raise Stopped
            self.put("end")
        except Stopped:  # for a client still waiting: the server is shutting down
            self.put("error", Overloaded("the completion was stopped", "stopped"))
        except Exception as exc:
            self.put("error", exc)

    async def cancel(self) -> None:
        self.stop.set()

    async def next(self, gone: asyncio.Future | None = None) -> tuple[str, Any]:
        """The next event; raises Stopped (and stops the work) when `gone` ends first."""
        if gone is None:
            return await self.events.get()
        getting = asyncio.ensure_future(self.events.get())
        await asyncio.wait({getting, gone}, return_when=asyncio.FIRST_COMPLETED)
        if getting.done():
            return getting.result()
        getting.cancel()
        self.stop.set()
        raise Stopped


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client has gone (call once the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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

    # Completions run here, not in Starlette's shared thread pool, so nothing else waits
    # for them; one thread per admitted completion, so a completion never waits for a
    # thread while another holds the model's lock.
    pool = ThreadPoolExecutor(max_workers=queue, thread_name_prefix="raft-completion")
    slots = threading.BoundedSemaphore(queue)
    running: set[Completion] = set()

    @asynccontextmanager
    async def lifespan(_app):
        yield
        for completion in list(running):
            completion.stop.set()
        pool.shutdown(wait=False, cancel_futures=True)

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

    def start(
        choose: Callable[[], Replica], pairs: list[tuple[str, str]], question: str
    ) -> Completion:
        if not slots.acquire(blocking=False):
            raise Overloaded(
                f"the server is busy with {queue} completions; retry shortly",
                "overloaded",
                {"Retry-After": "1"},
            )
        completion = Completion(asyncio.get_running_loop())
        running.add(completion)

        def work() -> None:
            try:
                completion.run(choose, pairs, question)
            finally:
                running.discard(completion)
                slots.release()

        try:
            pool.submit(work)
        except RuntimeError:  # the pool is shut down: the server is stopping
            running.discard(completion)
            slots.release()
            raise Overloaded("the server is shutting down", "shutting_down") from None
        return completion

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = parse_json(await read_body(request, max_body))
        pairs, question = parse_conversation(body, max_messages, max_message_chars)
        changes = sampling(body, max_reply_tokens)
        name = await asyncio.to_thread(model_name, body, replicas)

        def choose() -> Replica:
            replica = replicas.get(name)
            return replica.with_settings(**changes) if changes else replica

        completion = start(choose, pairs, question)
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


async def stream_chunks(
    completion: Completion,
    first: tuple[str, Any],
    memories: list[Memory],
    ident: str,
    created: int,
    model_name: str,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `[DONE]`; a failure midway
    is an `error` event before `[DONE]`."""

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

    try:
        yield event(
            {"role": "assistant", "content": ""}, memories=[memory_json(m) for m in memories]
        )
        kind, value = first
        while True:
            if kind == "piece":
                yield event({"content": value})
            elif kind == "end":
                yield event({}, "stop")
                break
            else:
                yield f"data: {json.dumps(failure_json(value)[1])}\n\n"
                break
            kind, value = await completion.next()
        yield "data: [DONE]\n\n"
    finally:
        completion.stop.set()  # the client left, or the stream is done


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
