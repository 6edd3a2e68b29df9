"""What `raft serve` checks before any route, so that even without a key a web page can
neither post to the server nor read its replies through DNS rebinding: the Host name, the
API key, and JSON-only POST bodies."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable
from typing import Any

from raft.serving.errors import error_body

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ANY_ADDRESS = {"0.0.0.0", "::", ""}
# A Host header as RFC 9110 has it: a DNS name or IPv4 address, or an IPv6 address in
# brackets, then an optional port of digits; nothing else (no userinfo, no path).
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::[0-9]{1,5})?")


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
