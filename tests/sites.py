"""Fixture websites served on 127.0.0.1: a fake Substack, an Atom blog, broken sources."""

from __future__ import annotations

import json
import ssl
import subprocess
from pathlib import Path

from werkzeug import Request, Response

LONG_LINE = " ".join(
    f"Sentence {n} of the one-line post keeps going without a break." for n in range(400)
)


def paragraphs(topic: str, n: int = 4) -> list[str]:
    return [
        f"{topic} paragraph {i}: the author writes at length about {topic.lower()}, "
        f"with enough words that an extractor keeps it as real article text, number {i}."
        for i in range(n)
    ]


def post_page(title: str, body: list[str] | str, paywall: bool = False) -> str:
    inner = body if isinstance(body, str) else "".join(f"<p>{p}</p>" for p in body)
    wall = (
        '<div class="paywall"><h3>This post is for paid subscribers</h3></div>' if paywall else ""
    )
    return (
        f"<!DOCTYPE html><html><head><title>{title} - The Ledger</title>"
        f'<meta property="og:title" content="{title}"></head><body>'
        '<nav><a href="/">Home</a> <a href="/archive">Archive</a></nav>'
        f'<article class="post"><h1 class="post-title">{title}</h1>'
        f'<div class="body markup">{inner}</div>{wall}</article>'
        "<footer><p>Subscribe to The Ledger. Share. Terms and privacy.</p></footer></body></html>"
    )


class FakeSubstack:
    """The archive endpoint (paged, at most 2 posts a page), post pages and /feed."""

    def __init__(self, base: str):
        self.base = base
        self.posts = [
            (
                "first-light",
                "First Light",
                "2021-03-04T08:00:00.000Z",
                "everyone",
                paragraphs("Lamps"),
            ),
            ("one-line", "The Long Line", "2021-06-10T08:00:00.000Z", "everyone", LONG_LINE),
            ("notes", "Notes", "2022-01-15T08:00:00.000Z", "everyone", paragraphs("Winter")),
            ("notes-2", "Notes", "2022-02-20T08:00:00.000Z", "everyone", paragraphs("Spring")),
            (
                "members",
                "For Members",
                "2022-05-01T08:00:00.000Z",
                "only_paid",
                paragraphs("Teaser", 2),
            ),
        ]
        self.archive_requests = 0
        self.page_requests = 0

    def url(self, slug: str) -> str:
        return f"{self.base}/p/{slug}"

    def __call__(self, request: Request) -> Response:
        if request.path == "/api/v1/archive":
            self.archive_requests += 1
            offset = int(request.args.get("offset", 0))
            limit = min(int(request.args.get("limit", 12)), 2)
            rows = [
                {"title": t, "slug": s, "canonical_url": self.url(s), "post_date": d, "audience": a}
                for s, t, d, a, _ in self.posts[offset : offset + limit]
            ]
            return Response(json.dumps(rows), content_type="application/json")
        for slug, title, _, audience, body in self.posts:
            if request.path == f"/p/{slug}":
                self.page_requests += 1
                return Response(
                    post_page(title, body, paywall=audience != "everyone"),
                    content_type="text/html; charset=utf-8",
                )
        return Response("not found", status=404)


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Field Notes</title><link href="{base}/"/><updated>2023-02-01T00:00:00Z</updated>
  <id>{base}/</id>
  <entry><title>Full Entry</title><link href="{base}/posts/full"/><id>{base}/posts/full</id>
    <updated>2023-01-05T10:00:00Z</updated>
    <content type="html">{full}</content></entry>
  <entry><title>Teaser Entry</title><link href="{base}/posts/teaser"/><id>{base}/posts/teaser</id>
    <updated>2023-02-01T10:00:00Z</updated>
    <summary>The beginning of a long piece about tides...</summary></entry>
</feed>"""


def atom_feed(base: str) -> str:
    from html import escape

    full = escape("".join(f"<p>{p}</p>" for p in paragraphs("Harbours", 8)))
    return ATOM.format(base=base, full=full)


def site_home(feed_path: str) -> str:
    return (
        "<html><head><title>Field Notes</title>"
        f'<link rel="alternate" type="application/atom+xml" href="{feed_path}"></head>'
        "<body><h1>Field Notes</h1><p>Welcome.</p></body></html>"
    )


# A throwaway self-signed certificate for 127.0.0.1 and localhost, valid 2000-2100, made
# with `openssl ca -selfsign`. It protects nothing: no client trusts it, which is the point.
def untrusted_tls_context(folder: Path) -> ssl.SSLContext:
    """A server-side TLS context with a fresh self-signed certificate for 127.0.0.1 (made
    with the openssl command, so no key is kept in the repository)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        + ["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
