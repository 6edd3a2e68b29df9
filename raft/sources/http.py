"""Polite, fast HTTP for fetching: bounded per host, retried with backoff, size-capped."""

from __future__ import annotations

import copy
import email.utils
import functools
import ipaddress
import math
import os
import socket
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
MAX_REDIRECTS = 10
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
    """Seconds a Retry-After header asks for (a number or an HTTP date); None if unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None  # a server's garbage should not stop the fetch: plain backoff
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@functools.lru_cache(maxsize=1024)
def is_private_host(host: str) -> bool:
    """Whether `host` is, or resolves to, a loopback, private, link-local or reserved address."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError, ValueError):
            return False  # a name that does not resolve leads nowhere private
        addresses = {ipaddress.ip_address(info[4][0]) for info in found}
    return any(_is_internal(address) for address in addresses)


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    return not address.is_global or address.is_multicast


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
        deadline: float | None = None,
    ):
        # Redirects are followed by _get_once, so that every hop can be checked.
        self.client = httpx.Client(
            headers={"User-Agent": USER_AGENT},
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self.per_host = per_host
        self.retries = (
            int(os.environ.get("RAFT_FETCH_RETRIES", "3")) if retries is None else retries
        )
        self.max_bytes = max_bytes
        self.backoff = backoff
        # `timeout` bounds each read; a server trickling a byte at a time needs a total bound.
        self.deadline = (
            float(os.environ.get("RAFT_FETCH_DEADLINE", "120")) if deadline is None else deadline
        )
        self.public_only = False  # set by for_source
        self._slots: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(per_host)
        )
        self._lock = threading.Lock()

    def for_source(self, url: str) -> Fetcher:
        """This fetcher for one source; a public source may lead to no private address."""
        view = copy.copy(self)  # the same client and per-host slots
        view.public_only = not is_private_host(urlsplit(url).hostname or "")
        return view

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
        """One GET, redirects followed here; the body must be complete by the deadline."""
        deadline = time.monotonic() + self.deadline
        request = self.client.build_request("GET", url)
        for hop in range(MAX_REDIRECTS + 1):
            self._refuse_private(url, request.url, hop)
            response = self.client.send(request, stream=True)
            try:
                if response.next_request is None:  # not a redirect
                    return self._read(url, response, deadline)
                request = response.next_request
            finally:
                response.close()
        raise FetchError(f"{url}: too many redirects")

    def _refuse_private(self, url: str, target: httpx.URL, hop: int) -> None:
        """Keep a public source from leading the fetch into loopback or private networks."""
        if self.public_only and is_private_host(target.raw_host.decode("ascii")):
            why = "refused (a loopback or private address, reached from a public source)"
            raise FetchError(f"{url}: redirect to {target} {why}" if hop else f"{url}: {why}")

    def _read(self, url: str, response: httpx.Response, deadline: float) -> _Raw:
        """The response with its body, unless that is too big or still arriving at the deadline."""
        too_big = FetchError(f"{url}: larger than {self.max_bytes >> 20} MB, skipped")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise too_big  # refused before reading any of it
        body = bytearray()
        for part in response.iter_bytes():
            body += part
            if len(body) > self.max_bytes:
                raise too_big
            if time.monotonic() > deadline:  # a retry would trickle again: not retried
                raise FetchError(f"{url}: no complete response within {self.deadline:g} s")
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
