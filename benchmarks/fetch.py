"""fetch: 200 posts from a local fake Substack with 50 ms latency, against fetching them in turn.

The fake Substack runs in its own process (so serving does not compete with the fetcher for the
GIL), on 127.0.0.1 only, one thread per connection, every response held 50 ms.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import statistics
import tempfile
import time
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from benchmarks.common import SEED, Result, document, median_seconds

LATENCY = 0.050  # seconds, per response
PAGE_LIMIT = 50  # posts per archive page at most, as Substack answers
GOAL = 4.0  # times faster than one by one
PER_HOST = 4  # raft fetch's default --per-host


def post_html(title: str, text: str) -> bytes:
    """A post page shaped like Substack's: navigation, the article, subscribe and footer."""
    body = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
    return (
        f"<!DOCTYPE html><html><head><title>{title} - The Ledger</title>"
        f'<meta property="og:title" content="{title}">'
        '<meta property="article:published_time" content="2024-01-05T08:00:00.000Z">'
        "</head><body>"
        '<nav><a href="/">Home</a> <a href="/archive">Archive</a> <a href="/about">About</a></nav>'
        f'<article class="post"><h1 class="post-title">{title}</h1>'
        '<div class="subtitle">Notes from the workshop</div>'
        f'<div class="body markup">{body}</div></article>'
        '<div class="subscribe"><p>Subscribe to The Ledger</p><form><input type="email">'
        "<button>Subscribe</button></form></div>"
        '<div class="share"><a href="#">Share</a> <a href="#">Comments</a></div>'
        "<footer><p>Subscribe to The Ledger. Share. Terms and privacy.</p></footer></body></html>"
    ).encode()


def site_posts(n: int) -> list[tuple[str, str, str, bytes]]:
    """(slug, title, date, page) of `n` deterministic posts, newest first, 3-12 KB of text."""
    rng = random.Random(SEED)
    posts = []
    for i in range(n):
        title = f"Workshop note {n - i}"
        day = date(2024, 12, 31) - timedelta(days=3 * i)
        text = document(rng, rng.randint(8, 30))
        posts.append((f"note-{n - i}", title, f"{day}T08:00:00.000Z", post_html(title, text)))
    return posts


def serve(n: int, ports: multiprocessing.Queue) -> None:
    """Serve the fake Substack of `n` posts on 127.0.0.1 until terminated; put its port."""
    posts = site_posts(n)
    pages = {f"/p/{slug}": page for slug, _, _, page in posts}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real site answers
        # Headers and body are two writes: with Nagle's algorithm the body would wait ~40 ms
        # for the client's delayed ACK, on top of the latency modelled.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            time.sleep(LATENCY)
            url = urlsplit(self.path)
            kind, body = "text/html; charset=utf-8", pages.get(url.path)
            if url.path == "/api/v1/archive":
                query = parse_qs(url.query)
                offset = int(query.get("offset", ["0"])[0])
                limit = min(int(query.get("limit", ["12"])[0]), PAGE_LIMIT)
                base = f"http://{self.headers['Host']}"
                rows = [
                    {
                        "title": title,
                        "slug": slug,
                        "canonical_url": f"{base}/p/{slug}",
                        "post_date": posted,
                        "audience": "everyone",
                    }
                    for slug, title, posted, _ in posts[offset : offset + limit]
                ]
                kind, body = "application/json", json.dumps(rows).encode()
            self.send_response(200 if body is not None else 404)
            body = b"not found" if body is None else body
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 64

    with Server(("127.0.0.1", 0), Handler) as server:
        ports.put(server.server_address[1])
        server.serve_forever()


def fetch_one_by_one(base: str, extracting: list[float]) -> int:
    """The raw reference: archive pages, then each post page in turn, extracted; posts read.

    Appends the seconds spent extracting to `extracting`.
    """
    import httpx
    import trafilatura

    posts: list[dict] = []
    spent = 0.0
    with httpx.Client(timeout=30) as client:
        while page := client.get(
            f"{base}/api/v1/archive?sort=new&offset={len(posts)}&limit={PAGE_LIMIT}"
        ).json():
            posts += page
        for post in posts:
            link = post["canonical_url"]
            response = client.get(link)
            response.raise_for_status()
            start = time.perf_counter()
            trafilatura.bare_extraction(
                response.text,
                url=link,
                with_metadata=True,
                favor_recall=True,
                include_comments=False,
            )
            spent += time.perf_counter() - start
    extracting.append(spent)
    return len(posts)


def run(quick: bool) -> list[Result]:
    import trafilatura

    from raft.corpus import fetch_corpus
    from raft.paths import Persona

    n, repeats = (20, 1) if quick else (200, 3)
    ports: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(n, ports))
    server.start()
    try:
        base = f"http://127.0.0.1:{ports.get(timeout=60)}"
        _, _, _, page = site_posts(1)[0]
        trafilatura.bare_extraction(page.decode(), favor_recall=True)  # first-call set-up
        with tempfile.TemporaryDirectory(prefix="raft-bench-fetch-") as folder:
            fetched: list[int] = []
            extracting: list[float] = []

            def fetch_with_raft() -> None:
                root = Path(tempfile.mkdtemp(dir=folder)) / "bench"
                fetched.append(fetch_corpus(Persona("bench", root), [base], per_host=PER_HOST).new)

            raw = median_seconds(lambda: fetch_one_by_one(base, extracting), repeats)
            ours = median_seconds(fetch_with_raft, repeats)
    finally:
        server.terminate()
        server.join()
    speedup = raw / ours
    # The best PER_HOST requests at a time allow: the first archive page, then every other
    # request in rounds of PER_HOST, each as long as a raw request, extraction all overlapped.
    pages = -(-n // PAGE_LIMIT) + 1  # the archive ends at its first empty page
    extract = statistics.median(extracting)
    round_trip = (raw - extract) / (n + pages)
    ceiling = raw / ((1 + -(-(n + pages - 1) // PER_HOST)) * round_trip)
    note = (
        f"{n} posts (pages of 3-12 KB of text), {LATENCY * 1000:.0f} ms per response, served by "
        f"a threaded server in its own process; raft = fetch_corpus in-process, per_host="
        f"{PER_HOST}, into a fresh data folder each repeat; raw = one httpx client, archive then "
        "each post in turn; both extract every post with trafilatura (as the original tool "
        f"did): {extract / n * 1000:.1f} ms a post in raw. {PER_HOST} requests at a time allow "
        f"at most {ceiling:.1f}x here ({n + pages} requests of {round_trip * 1000:.0f} ms); "
        f"the archive's {pages} pages are now read while posts are fetched (they used to be "
        "read before any post), and extraction overlaps the waits in the fetch threads."
    )
    if any(count != n for count in fetched):
        note += f" raft fetched {fetched} posts, not {n} each time."
    return [
        Result(
            stage="fetch",
            measured=f"seconds for {n} posts",
            value=ours,
            raw=raw,
            ratio=speedup,
            goal=f"≥ {GOAL:g}× faster",
            met=speedup >= GOAL and all(count == n for count in fetched),
            note=note,
        )
    ]
