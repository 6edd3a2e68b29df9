"""Substack: page through the public archive endpoint, fall back to the RSS feed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item, Skipped
from raft.sources.http import Fetcher, FetchError
from raft.sources.pages import extract_article

PAGE = 50
# Far beyond any real archive (50,000 posts); a server that pages forever stops here.
MAX_PAGES = 1000


def archive_page(fetcher: Fetcher, base: str, offset: int) -> list[dict] | None:
    """One page of `/api/v1/archive`, or None when the endpoint is not there."""
    try:
        response = fetcher.get(f"{base}/api/v1/archive?sort=new&offset={offset}&limit={PAGE}")
        posts = json.loads(response.body)
    except (FetchError, ValueError, RecursionError):  # RecursionError: JSON nested deep
        return None
    return posts if isinstance(posts, list) else None


def archive_posts(fetcher: Fetcher, base: str, first: list[dict]) -> Iterator[dict | Failure]:
    """Every post of the archive, newest first; a Failure last if cut at MAX_PAGES."""
    # A server that ignores `offset` repeats its page: the end is the first page with no
    # post not seen before, not the first empty one.
    seen: set[str] = set()
    posts, offset = first, 0
    for page in range(MAX_PAGES):
        if page:
            posts = archive_page(fetcher, base, offset) or []
        fresh = []
        for post in posts:
            if isinstance(post, dict) and (key := _identity(post)) not in seen:
                seen.add(key)
                fresh.append(post)
        if not fresh:
            return
        yield from fresh
        offset += len(posts)
    yield Failure(base, f"archive stopped after {MAX_PAGES} pages; the rest is not fetched")


def _identity(post: dict) -> str:
    """What tells two archive entries apart, hashable whatever JSON the server sent."""
    return json.dumps([post.get("canonical_url"), post.get("id")], sort_keys=True)


def substack_documents(
    fetcher: Fetcher,
    base: str,
    first_page: list[dict],
    source: str,
    is_known: Callable[[str], bool],
    map_pages,
) -> Iterator[Item]:
    """Documents for posts not yet in the corpus; paywalled posts are marked as such."""
    known, cut = [], []

    def new_posts() -> Iterator[dict]:
        for post in archive_posts(fetcher, base, first_page):
            if isinstance(post, Failure):
                cut.append(post)
                continue
            link = post.get("canonical_url")
            if not (isinstance(link, str) and link):
                continue  # no page to read
            if is_known(link):
                known.append(link)
            else:
                yield post

    def read(post: dict) -> Document | Failure:
        link = post["canonical_url"]
        try:
            article = extract_article(fetcher.get(link).text, link)
        except FetchError as exc:
            return Failure(link, str(exc))
        if article is None:
            return Failure(link, "the page holds no article text")
        paywalled = post.get("audience", "everyone") != "everyone" or article.teaser_only
        title = post.get("title")
        return Document(
            title=(title if isinstance(title, str) and title.strip() else article.title).strip(),
            link=link,
            date=normalize_date(post.get("post_date")) or article.date,
            content=article.text,
            source=source,
            paywalled=paywalled,
        )

    # Posts are read while the next archive pages are fetched, not after the last one.
    yield from map_pages(read, new_posts())
    yield from map(Skipped, known)
    yield from cut
