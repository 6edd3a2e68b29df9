"""Polite, fast HTTP for fetching: bounded per host, retried with backoff, size-capped."""

from __future__ import annotations

import email.utils
import os
import ssl
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from raft import __version__

USER_AGENT = f"raft-toolkit/{__version__} (builds a writer's corpus; honours Retry-After)"
RETRY_STATUS = {429, 500, 502, 503, 504}
# Types whose body should be text; NUL bytes in one mean a binary file under a wrong label.
TEXT_TYPES = ("text/", "html", "xml", "json", "rss", "atom")


class FetchError(Exception):
    """A URL that could not be fetched; the message names it."""


@dataclass(frozen=True)
class Response:
    url: str  # after redirects
    status: int
    content_type: str
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    parsed = email.utils.parsedate_to_datetime(value)
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _untrusted_certificate(exc: BaseException | None) -> str | None:
    """Why the server's TLS certificate was refused, when that is what `exc` came from."""
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc.verify_message or str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


class Fetcher:
    """A shared httpx client; at most `per_host` requests in flight to any one host."""

    def __init__(
        self,
        per_host: int = 4,
        timeout: float = 30.0,
        retries: int | None = None,
        max_bytes: int = 20 << 20,
        backoff: float = 0.5,
    ):
        self.client = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            follow_redirects=True,
            max_redirects=10,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.per_host = per_host
        self.retries = (
            int(os.environ.get("RAFT_FETCH_RETRIES", "3")) if retries is None else retries
        )
        self.max_bytes = max_bytes
        self.backoff = backoff
        self._slots: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(per_host)
        )
        self._lock = threading.Lock()

    def _slot(self, url: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._slots[urlsplit(url).netloc]

    def get(self, url: str) -> Response:
        """GET with retries on 429/5xx/transport errors; any final non-2xx is a FetchError."""
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2**attempt
            try:
                with self._slot(url):
                    response = self._get_once(url)
            except httpx.TooManyRedirects:
                raise FetchError(f"{url}: too many redirects") from None
            except httpx.TransportError as exc:
                if why := _untrusted_certificate(exc):  # a retry meets the same certificate
                    raise FetchError(f"{url}: TLS certificate not trusted ({why})") from None
                if attempt == self.retries:
                    raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
            else:
                if response.status < 400:
                    return _checked_text(url, response)
                if response.status not in RETRY_STATUS or attempt == self.retries:
                    raise FetchError(f"{url}: HTTP {response.status}")
                wait = min(_retry_after(response.retry_after) or wait, 60.0)
            time.sleep(wait)  # backoff between attempts, not a fixed pause per request
        raise AssertionError("unreachable")

    def _get_once(self, url: str) -> _Raw:
        too_big = FetchError(f"{url}: larger than {self.max_bytes >> 20} MB, skipped")
        with self.client.stream("GET", url) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise too_big  # refused before reading any of it
            body = bytearray()
            for part in response.iter_bytes():
                body += part
                if len(body) > self.max_bytes:
                    raise too_big
            return _Raw(
                url=str(response.url),
                status=response.status_code,
                content_type=response.headers.get("content-type", ""),
                body=bytes(body),
                retry_after=response.headers.get("retry-after"),
            )

    def close(self) -> None:
        self.client.close()


def _checked_text(url: str, response: Response) -> Response:
    """`response`, unless it is labelled as text but holds binary data (NUL bytes)."""
    kind = response.content_type.lower()
    if any(t in kind for t in TEXT_TYPES) and b"\x00" in response.body[:8192]:
        label = response.content_type.split(";")[0].strip()
        raise FetchError(f"{url}: binary content, not a text page (served as {label})")
    return response


@dataclass(frozen=True)
class _Raw(Response):
    retry_after: str | None = None
