"""RSS and Atom feeds with feedparser; teaser entries get their page fetched in full."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item, Skipped
from raft.sources.http import Fetcher, FetchError
from raft.sources.pages import extract_article

# Shorter feed text than this, or text ending like a teaser, means "read the page".
TEASER_CHARS = 1200


def parse_feed(body: bytes):
    """A feedparser result if `body` is a feed with linked entries, else None."""
    import feedparser

    parsed = feedparser.parse(body)
    if not parsed.get("version") or not any(e.get("link") for e in parsed.entries):
        return None
    return parsed


def feed_problem(body: bytes) -> str:
    """Why `body` is not a usable feed, for the error message."""
    import feedparser

    parsed = feedparser.parse(body)
    if parsed.bozo:
        return f"not a valid RSS/Atom feed ({parsed.get('bozo_exception')})"
    return "a feed with no entries"


def _entry_text(entry) -> str:
    from raft.sources.pages import html_to_text

    html = entry.content[0].value if entry.get("content") else entry.get("summary", "")
    return html_to_text(html)


def _is_teaser(text: str) -> bool:
    tail = text.rstrip()[-40:].lower()
    return len(text) < TEASER_CHARS or tail.endswith(("…", "...", "[…]", "read more"))


def feed_documents(
    parsed, source: str, fetcher: Fetcher, is_known: Callable[[str], bool], map_pages
) -> Iterator[Item]:
    """Documents for the feed's new entries; teasers are replaced by the full page."""
    entries = []
    for entry in parsed.entries:
        if entry.get("link") and is_known(entry["link"]):
            yield Skipped(entry["link"])
        elif entry.get("link"):
            entries.append(entry)

    def read(entry) -> Document | Failure:
        link = entry.get("link")
        title = (entry.get("title") or "").strip()
        date = normalize_date(entry.get("published_parsed") or entry.get("updated_parsed"))
        text = _entry_text(entry)
        if _is_teaser(text):
            try:
                article = extract_article(fetcher.get(link).text, link)
            except FetchError as exc:
                article = None
                if not text:
                    return Failure(link, str(exc))
            if article and len(article.text) > len(text):
                text, title, date = article.text, title or article.title, date or article.date
        if not text:
            return Failure(link, "no text in the feed entry or its page")
        return Document(title=title, link=link, date=date, content=text, source=source)

    yield from map_pages(read, entries)
