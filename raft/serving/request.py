"""What a request to `raft serve` may send, checked before any work: the body (size, JSON),
the conversation, the sampling settings and the model it names. Every limit has a cap, so
that a client the server does not trust cannot make it hold or compute without bound."""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import Request

from raft.replica import Replicas
from raft.serving.errors import BadRequest, NotFound, TooLarge

MAX_BODY = 1_000_000  # bytes of a request body
MAX_MESSAGES = 200  # messages of one request
MAX_MESSAGE_CHARS = 100_000  # characters of one message
MAX_REPLY_TOKENS = 4096  # the largest `max_tokens` a request may ask for
SEED_RANGE = (-(2**63), 2**63 - 1)


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
