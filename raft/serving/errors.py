"""The errors `raft serve` answers with, all in OpenAI's JSON error shape."""

from __future__ import annotations

from typing import Any

from raft.backends.spec import redact
from raft.errors import RaftError


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
