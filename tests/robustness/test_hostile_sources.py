"""Hostile web servers (issue #17): `raft fetch` ends, refuses what it must, keeps what it got.

Every server runs on 127.0.0.1. A "public" source is reached offline through a forward proxy
on loopback: the fetch names `http://public.example/...`, which does not resolve here, and
the proxy answers for it.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from raft.files import read_jsonl
from tests.helpers import run_cli
from tests.sites import FakeSubstack, paragraphs, post_page

# Seconds before a test calls a fetch hung; run_cli's own limit is ten minutes.
HANG = 120


def corpus(data_dir: Path) -> list[dict]:
    path = data_dir / "lena" / "corpus.jsonl"
    return list(read_jsonl(path)) if path.exists() else []


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("raft: warning: ")]


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A threaded http.server on 127.0.0.1 for what pytest-httpserver cannot do."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.seen = []  # request targets, in order
    server.routes = {}  # absolute URL -> (status, headers, body), for the proxy
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Trickle(Quiet):
    """Headers at once, then a body that never completes: a byte every quarter second."""

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(400):  # 100 s at most, far past the deadline the test sets
            if self.server.stopping.wait(0.25):
                return
            try:
                self.wfile.write(b"<")
                self.wfile.flush()
            except OSError:
                return  # the client hung up


class Proxy(Quiet):
    """A forward proxy that answers absolute-URI requests from its routes."""

    def do_GET(self) -> None:
        self.server.seen.append(self.path)
        status, headers, body = self.server.routes.get(self.path, (404, {}, b"no such page"))
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def through(proxy: ThreadingHTTPServer) -> dict[str, str]:
    """Environment that sends the CLI's plain-HTTP requests through `proxy`, except loopback."""
    url = f"http://127.0.0.1:{proxy.server_port}"
    direct = "127.0.0.1,localhost"
    return {"HTTP_PROXY": url, "http_proxy": url, "NO_PROXY": direct, "no_proxy": direct}


def article(title: str, topic: str) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "text/html"}, post_page(title, paragraphs(topic)).encode()


def archive_rows(site: FakeSubstack, posts: list[tuple]) -> list[dict]:
    return [{"title": t, "canonical_url": site.url(s), "post_date": d} for s, t, d, *_ in posts]


# 1. An archive that never ends.


@pytest.mark.timeout(HANG)
def test_an_archive_that_ignores_offset_is_paged_once_more_not_forever(data_dir, httpserver):
    site = FakeSubstack(httpserver.url_for("").rstrip("/"))
    offsets = []

    def same_page(request: Request) -> Response:
        offsets.append(request.args.get("offset"))
        return Response(json.dumps(archive_rows(site, site.posts[:2])), mimetype="application/json")

    httpserver.expect_request("/api/v1/archive").respond_with_handler(same_page)
    httpserver.expect_request(re.compile(r"^/p/")).respond_with_handler(site)
    result = run_cli("raft", "fetch", "lena", "--from", site.base)
    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stdout
    assert offsets == ["0", "2"]  # the second page brought nothing new: the end
    assert {d["link"] for d in corpus(data_dir)} == {site.url(s) for s, *_ in site.posts[:2]}


@pytest.mark.timeout(HANG)
def test_an_endless_archive_stops_at_the_page_cap_and_says_so(data_dir, httpserver):
    site = FakeSubstack(httpserver.url_for("").rstrip("/"))
    offsets = []

    def endless(request: Request) -> Response:
        offset = int(request.args["offset"])
        offsets.append(offset)
        # Always one post never seen before, so only the cap can end it.
        rows = archive_rows(site, site.posts[:2]) if offset == 0 else [{"id": offset}]
        return Response(json.dumps(rows), mimetype="application/json")

    httpserver.expect_request("/api/v1/archive").respond_with_handler(endless)
    httpserver.expect_request(re.compile(r"^/p/")).respond_with_handler(site)
    result = run_cli("raft", "fetch", "lena", "--from", site.base)
    assert result.returncode == 0, result.stderr
    assert len(offsets) == 1000
    assert warnings(result.stderr) == [
        f"raft: warning: {site.base}: archive stopped after 1000 pages; the rest is not fetched"
    ]
    assert len(corpus(data_dir)) == 2  # what came before the cap is kept


@pytest.mark.timeout(HANG)
def test_junk_in_the_archive_is_passed_over_not_fatal(data_dir, httpserver):
    site = FakeSubstack(httpserver.url_for("").rstrip("/"))
    first, second = archive_rows(site, site.posts[:2])
    junk = [1, "two", None, {"canonical_url": 5}, {"canonical_url": ["x"]}, {"title": 7}]

    def archive(request: Request) -> Response:
        if request.args["offset"] == "0":
            rows = [*junk, {**first, "title": ["not", "a", "title"]}, second]
            return Response(json.dumps(rows), mimetype="application/json")
        return Response("[" * 100_000, mimetype="application/json")  # nested past any parser

    httpserver.expect_request("/api/v1/archive").respond_with_handler(archive)
    httpserver.expect_request(re.compile(r"^/p/")).respond_with_handler(site)
    result = run_cli("raft", "fetch", "lena", "--from", site.base)
    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stdout and "0 failed" in result.stdout
    titles = {d["link"]: d["title"] for d in corpus(data_dir)}
    assert titles == {
        first["canonical_url"]: "First Light",
        second["canonical_url"]: "The Long Line",
    }


# 2. A response that trickles.


@pytest.mark.timeout(HANG)
def test_a_trickling_page_is_dropped_at_the_deadline_and_not_retried(data_dir):
    with serving(Trickle) as server:
        url = f"http://127.0.0.1:{server.server_port}/slow"
        started = time.monotonic()
        result = run_cli("raft", "fetch", "lena", "--from", url, env={"RAFT_FETCH_DEADLINE": "2"})
        took = time.monotonic() - started
        assert result.returncode == 1, result.stderr
        assert f"{url}: no complete response within 2 s" in result.stderr
        assert server.seen == ["/slow"]  # the same page would trickle again: no retry
    assert took < 60  # seconds; a byte every 0.25 s would have held it for 100 s


# 3. Retry-After headers that are not whole seconds.


class ThrottledSubstack(FakeSubstack):
    """Each post page named in `waits` answers its first request 503 with that Retry-After."""

    def __init__(self, base: str, waits: dict[str, str]):
        super().__init__(base)
        self.waits = waits
        self.asked: dict[str, list[float]] = {}

    def __call__(self, request: Request) -> Response:
        slug = request.path.removeprefix("/p/")
        self.asked.setdefault(slug, []).append(time.monotonic())
        if (wait := self.waits.pop(slug, None)) is not None:
            return Response("busy", status=503, headers={"Retry-After": wait})
        return super().__call__(request)


@pytest.mark.timeout(HANG)
def test_odd_retry_after_values_are_tolerated_and_the_other_pages_kept(data_dir, httpserver):
    waits = {"first-light": "1.5", "notes": "soon", "notes-2": "nan", "one-line": "-3"}
    site = ThrottledSubstack(httpserver.url_for("").rstrip("/"), dict(waits))
    httpserver.expect_request("/api/v1/archive").respond_with_handler(site)
    httpserver.expect_request(re.compile(r"^/p/")).respond_with_handler(site)
    result = run_cli("raft", "fetch", "lena", "--from", site.base)
    assert result.returncode == 0, result.stderr
    assert "5 new" in result.stdout and "0 failed" in result.stdout
    assert {d["link"] for d in corpus(data_dir)} == {site.url(s) for s, *_ in site.posts}
    assert all(len(site.asked[slug]) == 2 for slug in waits)  # each retried once
    first, second = site.asked["first-light"]
    assert second - first >= 1.45  # "1.5" was read as 1.5 s, not dropped for the 0.5 s backoff


# 4. --per-host below 1.


@pytest.mark.timeout(HANG)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_per_host_below_one_is_refused_before_anything_is_read(data_dir, httpserver, value):
    source = httpserver.url_for("/essay")
    result = run_cli("raft", "fetch", "lena", "--from", source, "--per-host", value)
    assert result.returncode == 2, result.stderr
    # The progress display, opened by the CLI before the check, leaves an empty line on a pipe.
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines == ["raft: error: --per-host must be at least 1"]
    assert not httpserver.log
    assert not (data_dir / "lena" / "corpus.jsonl").exists()
    assert not (data_dir / "lena" / "persona.toml").exists()


# 5. Redirects from a public source into loopback.


@pytest.mark.timeout(HANG)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_public_source_redirecting_to_loopback_is_refused(data_dir, httpserver, host):
    secret = f"http://{host}:{httpserver.port}/secret"
    httpserver.expect_request("/secret").respond_with_data(
        post_page("Secret", paragraphs("Secret")), content_type="text/html"
    )
    source = "http://public.example/essay"
    with serving(Proxy) as proxy:
        proxy.routes = {source: (302, {"Location": secret}, b"")}
        result = run_cli("raft", "fetch", "lena", "--from", source, env=through(proxy))
    assert proxy.seen == [source]  # the public address was really asked through the proxy
    assert result.returncode == 1, result.stderr
    (warning,) = warnings(result.stderr)
    assert warning.endswith(
        f"{source}: redirect to {secret} refused "
        "(a loopback or private address, reached from a public source)"
    )
    assert not httpserver.log  # the secret page was never requested
    assert corpus(data_dir) == []


@pytest.mark.timeout(HANG)
def test_a_public_feed_linking_into_loopback_keeps_the_teaser_not_the_page(data_dir, httpserver):
    secret = httpserver.url_for("/secret")
    httpserver.expect_request("/secret").respond_with_data(
        post_page("Secret", paragraphs("Secret")), content_type="text/html"
    )
    full = "".join(f"<p>{p}</p>" for p in paragraphs("Harbours", 8))
    feed = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Open</title>'
        "<link>http://public.example/</link>"
        "<item><title>Open</title><link>http://public.example/posts/open</link>"
        f"<description><![CDATA[{full}]]></description></item>"
        f"<item><title>Inside</title><link>{secret}</link>"
        "<description>The beginning of something...</description></item>"
        "</channel></rss>"
    ).encode()
    source = "http://public.example/feed.xml"
    with serving(Proxy) as proxy:
        proxy.routes = {source: (200, {"Content-Type": "application/rss+xml"}, feed)}
        result = run_cli("raft", "fetch", "lena", "--from", source, env=through(proxy))
    assert result.returncode == 0, result.stderr
    docs = {d["title"]: d["content"] for d in corpus(data_dir)}
    assert docs["Open"] == "\n\n".join(paragraphs("Harbours", 8))
    assert docs["Inside"] == "The beginning of something..."  # the feed's text, not the page's
    assert not httpserver.log


@pytest.mark.timeout(HANG)
def test_a_public_source_may_redirect_to_another_public_host(data_dir):
    source, target = "http://public.example/moved", "http://other.example/essay"
    with serving(Proxy) as proxy:
        proxy.routes = {
            source: (301, {"Location": target}, b""),
            target: article("Moved Essay", "Bridges"),
        }
        result = run_cli("raft", "fetch", "lena", "--from", source, env=through(proxy))
    assert result.returncode == 0, result.stderr
    assert proxy.seen == [source, target]
    ((title, link),) = [(d["title"], d["link"]) for d in corpus(data_dir)]
    assert (title, link) == ("Moved Essay", target)


@pytest.mark.timeout(HANG)
def test_a_loopback_source_may_redirect_within_loopback(data_dir, httpserver: HTTPServer):
    moved = f"http://localhost:{httpserver.port}/new"
    httpserver.expect_request("/old").respond_with_data("", status=302, headers={"Location": moved})
    httpserver.expect_request("/new").respond_with_data(
        post_page("Local Essay", paragraphs("Lanes")), content_type="text/html"
    )
    source = f"http://127.0.0.1:{httpserver.port}/old"
    result = run_cli("raft", "fetch", "lena", "--from", source)
    assert result.returncode == 0, result.stderr
    ((title, link),) = [(d["title"], d["link"]) for d in corpus(data_dir)]
    assert (title, link) == ("Local Essay", moved)
