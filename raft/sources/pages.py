"""Article text from HTML with trafilatura, paragraph breaks kept."""

from __future__ import annotations

import re
from dataclasses import dataclass

from raft.dates import normalize_date

# Markers of a page that shows subscribers the rest (Substack and common paywall widgets).
_PAYWALL = re.compile(
    r'class="[^"]*\bpaywall\b|This post is for paid subscribers|data-testid="paywall"', re.I
)


MIN_ARTICLE_CHARS = 100


@dataclass(frozen=True)
class Article:
    title: str
    date: str
    text: str
    teaser_only: bool


def extract_article(html: str, url: str) -> Article | None:
    """The page's main text, or None when it holds no article."""
    import trafilatura

    doc = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, favor_recall=True, include_comments=False
    )
    if doc is None or not (doc.text or "").strip():
        return None
    # trafilatura puts one paragraph a line; a blank line between them keeps them paragraphs.
    paragraphs = [line.strip() for line in doc.text.splitlines() if line.strip()]
    title = (doc.title or "").strip()
    if paragraphs and paragraphs[0] == title:
        paragraphs = paragraphs[1:]
    if sum(len(p) for p in paragraphs) < MIN_ARTICLE_CHARS:
        return None  # navigation or a stub, not an article
    return Article(
        title=title,
        date=normalize_date(doc.date),
        text="\n\n".join(paragraphs),
        teaser_only=bool(_PAYWALL.search(html)),
    )


def find_feed_link(html: str, base_url: str) -> str | None:
    """The page's `<link rel="alternate">` RSS/Atom feed, as an absolute URL."""
    from urllib.parse import urljoin

    import lxml.html

    try:
        tree = lxml.html.fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return None
    for link in tree.xpath('//link[@rel="alternate"][@href]'):
        kind = (link.get("type") or "").lower()
        if "rss" in kind or "atom" in kind:
            return urljoin(base_url, link.get("href"))
    return None


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment, one paragraph per block, blank lines between."""
    import lxml.html

    if not html.strip():
        return ""
    try:
        root = lxml.html.fromstring(f"<div>{html}</div>")
    except (ValueError, lxml.etree.ParserError):
        return html.strip()
    blocks = root.xpath("//p|//li|//h1|//h2|//h3|//h4|//blockquote|//pre")
    if not blocks:
        return " ".join(root.text_content().split())
    outer = [b for b in blocks if not b.xpath("ancestor::p|ancestor::li|ancestor::blockquote")]
    texts = [" ".join(b.text_content().split()) for b in outer]
    return "\n\n".join(t for t in texts if t)
