"""Substack: page through the public archive endpoint, fall back to the RSS feed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item, Skipped
from raft.sources.http import Fetcher, FetchError
from raft.sources.pages import extract_article

PAGE = 50


def archive_page(fetcher: Fetcher, base: str, offset: int) -> list[dict] | None:
    """One page of `/api/v1/archive`, or None when the endpoint is not there."""
    try:
        response = fetcher.get(f"{base}/api/v1/archive?sort=new&offset={offset}&limit={PAGE}")
        posts = json.loads(response.body)
    except (FetchError, ValueError):
        return None
    return posts if isinstance(posts, list) else None


def archive_posts(fetcher: Fetcher, base: str, first: list[dict]) -> Iterator[dict]:
    """Every post of the archive, newest first, until an empty page."""
    posts, offset = first, 0
    while posts:
        yield from posts
        offset += len(posts)
        posts = archive_page(fetcher, base, offset) or []


def substack_documents(
    fetcher: Fetcher,
    base: str,
    first_page: list[dict],
    source: str,
    is_known: Callable[[str], bool],
    map_pages,
) -> Iterator[Item]:
    """Documents for posts not yet in the corpus; paywalled posts are marked as such."""
    known = []

    def new_posts() -> Iterator[dict]:
        for post in archive_posts(fetcher, base, first_page):
            link = post.get("canonical_url")
            if link and is_known(link):
                known.append(link)
            elif link:
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
        return Document(
            title=(post.get("title") or article.title).strip(),
            link=link,
            date=normalize_date(post.get("post_date")) or article.date,
            content=article.text,
            source=source,
            paywalled=paywalled,
        )

    # Posts are read while the next archive pages are fetched, not after the last one.
    yield from map_pages(read, new_posts())
    yield from map(Skipped, known)
