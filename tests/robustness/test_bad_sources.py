"""Bad corpus sources: one clear line naming the source, exit 1, the corpus untouched."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from tests.helpers import run_cli
from tests.sites import paragraphs, post_page, untrusted_tls_context

MB = 1 << 20


@pytest.fixture
def corpus_before(data_dir: Path, tmp_path: Path) -> bytes:
    """A corpus with one document, fetched from a good source; its bytes before the test."""
    good = tmp_path / "good.txt"
    good.write_text("Kept text.\n")
    assert run_cli("raft", "fetch", "author", "--from", str(good)).returncode == 0
    return (data_dir / "author" / "corpus.jsonl").read_bytes()


def assert_fails_cleanly(
    data_dir: Path, before: bytes, source: str, message: str, code: int = 1
) -> None:
    result = run_cli("raft", "fetch", "author", "--from", source, env={"RAFT_FETCH_RETRIES": "0"})
    assert result.returncode == code, (source, result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    assert source.split("://")[-1] in result.stderr, result.stderr
    assert "nothing fetched; the corpus is unchanged" in result.stderr
    assert "Traceback" not in result.stderr
    assert (data_dir / "author" / "corpus.jsonl").read_bytes() == before


def recorded_sources(data_dir: Path) -> list[str]:
    return tomllib.loads((data_dir / "author" / "persona.toml").read_text())["sources"]


def test_bad_sources_fail_clearly_and_never_wipe_the_corpus(
    data_dir, httpserver, tmp_path, corpus_before
):
    httpserver.expect_request("/missing").respond_with_data("gone", status=404)
    httpserver.expect_request("/feed.xml").respond_with_data(
        "<rss><channel><item>", content_type="application/rss+xml"
    )
    httpserver.expect_request("/nav").respond_with_data(
        "<html><body><nav>Home</nav></body></html>", content_type="text/html"
    )
    httpserver.expect_request("/loop/a").respond_with_data(
        "", status=302, headers={"Location": "/loop/b"}
    )
    httpserver.expect_request("/loop/b").respond_with_data(
        "", status=302, headers={"Location": "/loop/a"}
    )
    # A PNG's signature and random bytes, labelled as a web page.
    binary = b"\x89PNG\r\n\x1a\n" + random.Random(7).randbytes(64 << 10)
    httpserver.expect_request("/photo").respond_with_data(binary, content_type="text/html")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    cases = {
        httpserver.url_for("/missing"): "HTTP 404",
        httpserver.url_for("/feed.xml"): "not a valid RSS/Atom feed",
        httpserver.url_for("/nav"): "no article text",
        httpserver.url_for("/loop/a"): "too many redirects",
        httpserver.url_for("/photo"): "binary content, not a text page (served as text/html)",
        str(bad): "not UTF-8 text",
        "http://127.0.0.1:9/nothing": "ConnectError",
        str(tmp_path / "absent"): "no such file or folder",
    }
    for source, message in cases.items():
        code = 1 if "://" in source else 2  # a web source failed; a local input must change
        assert_fails_cleanly(data_dir, corpus_before, source, message, code)
    assert recorded_sources(data_dir) == [str(tmp_path / "good.txt")]  # failures not recorded


def test_an_untrusted_tls_certificate_is_named_as_such(data_dir, tmp_path, corpus_before):
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=untrusted_tls_context(tmp_path))
    server.expect_request("/essay").respond_with_data(
        post_page("Behind Bad TLS", paragraphs("Locks")), content_type="text/html"
    )
    server.start()
    try:
        url = server.url_for("/essay")
        assert url.startswith("https://127.0.0.1:")
        assert_fails_cleanly(data_dir, corpus_before, url, "TLS certificate not trusted")
    finally:
        server.stop()
    assert recorded_sources(data_dir) == [str(tmp_path / "good.txt")]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_page_over_the_size_cap_is_refused_without_reading_it_all(
    data_dir, httpserver, tmp_path, corpus_before, declared
):
    total = 50 * MB
    sent = 0
    block = b"<p>" + b"a" * (MB - 7) + b"</p>\n"  # 1 MB, yielded 50 times

    def page() -> Iterator[bytes]:
        nonlocal sent
        while sent < total:
            sent += len(block)
            yield block

    headers = {"Content-Length": str(total)} if declared else {}
    httpserver.expect_request("/huge").respond_with_handler(
        lambda request: Response(page(), content_type="text/html", headers=headers)
    )
    url = httpserver.url_for("/huge")
    assert_fails_cleanly(data_dir, corpus_before, url, "larger than 20 MB")
    assert sent < total  # the rest of the page was never asked for
    assert recorded_sources(data_dir) == [str(tmp_path / "good.txt")]
