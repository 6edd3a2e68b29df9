"""EPUB books (ebooklib): one document per chapter, its (X)HTML as paragraphs with headings and
list items as Markdown lines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item
from raft.sources.budget import FileBudget, OverBudget
from raft.sources.documents import date_prefix, is_zip, join_blocks, reason, tidy

_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_SKIPPED = {"head", "script", "style", "template", "nav", "svg", "math"}
# fmt: off
_HTML_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "header", "hr", "li", "main", "ol", "p", "section",
    "table", "td", "th", "tr", "ul",
}
# fmt: on


def epub_documents(file: Path, source: str) -> Iterator[Item]:
    """One document per chapter of an EPUB (spine order), titled `Book — Chapter`."""
    if not is_zip(file):
        yield Failure(str(file), "not a readable EPUB: not a ZIP archive")
        return
    budget = FileBudget()
    try:
        book = _read_epub(file, budget)
        book_title = _epub_field(book, "title") or file.stem
        date = normalize_date(_epub_field(book, "date")) or date_prefix(file)
        chapters = [text for text in _epub_chapters(book, budget) if text]
    except OverBudget as exc:
        yield Failure(str(file), str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a damaged book is reported, the fetch goes on
        yield Failure(str(file), f"not a readable EPUB: {reason(exc)}")
        return
    if not chapters:
        yield Failure(str(file), "the EPUB has no chapter with text")
        return
    for number, text in enumerate(chapters, 1):
        heading = next((line for line in text.splitlines() if line.startswith("#")), "")
        chapter = heading.lstrip("#").strip() or f"Chapter {number}"
        yield Document(
            title=f"{book_title} — {chapter}", link="", date=date, content=text, source=source
        )


def _read_epub(file: Path, budget: FileBudget) -> Any:
    """The book as ebooklib reads it, every member it reads charged to the budget first."""
    import posixpath
    import warnings

    from ebooklib import epub

    class BudgetedReader(epub.EpubReader):
        def read_file(self, name: str) -> bytes:
            # ebooklib reads every manifest item whole, as often as the manifest names it;
            # zipfile never gives more than a member's declared size, so that is the charge.
            budget.check_time()
            budget.spend_decoded(self.zf.getinfo(posixpath.normpath(name)).file_size)
            return super().read_file(name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ebooklib warns about its own future defaults
        return BudgetedReader(str(file), options={"ignore_ncx": True}).load()


def _epub_field(book: Any, name: str) -> str:
    """The first Dublin Core `name` of the book, as text; "" when it has none."""
    values = book.get_metadata("DC", name)
    return str(values[0][0]).strip() if values and values[0][0] else ""


def _epub_chapters(book: Any, budget: FileBudget) -> Iterator[str]:
    """The text of each spine document in reading order, headings as Markdown lines."""
    from ebooklib import ITEM_DOCUMENT
    from ebooklib.epub import EpubNav

    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        # The navigation document is a table of contents, not writing.
        if item is None or isinstance(item, EpubNav) or item.get_type() != ITEM_DOCUMENT:
            continue
        budget.spend_parts(1, "chapters")
        budget.check_time()
        text = html_text(item.get_content())
        budget.spend_text(len(text))  # a spine may list one chapter many times
        yield text


def html_text(markup: bytes | str) -> str:
    """The text of an (X)HTML page: one paragraph per block, headings as `#` lines, list items
    as `- ` or `1. ` lines."""
    from lxml import etree, html

    data = markup.encode("utf-8") if isinstance(markup, str) else markup
    if not data.strip():
        return ""
    try:
        # EPUB chapters are XHTML, which the HTML parser misreads (`<title/>` swallows the rest).
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        root = html.document_fromstring(data)  # HTML entities such as &nbsp;, or tag soup
    body = next((el for el in root.iter() if _tag(el) == "body"), root)
    blocks = _Blocks()
    blocks.walk(body)
    blocks.flush()
    return join_blocks(blocks.blocks)


def _tag(element: Any) -> str:
    """An element's tag without its namespace, lowercase; "" for comments and the like."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


class _Blocks:
    """Paragraph-level blocks of an HTML tree, collected in document order."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str]] = []  # (text, group), as `join_blocks` takes them
        self.words: list[str] = []
        self.marker = ""  # a list item's marker, put before its first block

    def flush(self) -> None:
        text = tidy("".join(self.words))
        if text:
            self.blocks.append((self.marker + text, "list" if self.marker else ""))
            self.marker = ""
        self.words.clear()

    def walk(self, element: Any) -> None:
        tag = _tag(element)
        if tag in _HTML_HEADINGS:
            self.flush()
            text = " ".join("".join(element.itertext()).split())
            if text:
                self.blocks.append((f"{'#' * _HTML_HEADINGS[tag]} {text}", ""))
        elif tag == "br":
            self.words.append("\n")
        elif tag == "pre":
            self.flush()
            text = "".join(element.itertext()).strip("\n")
            if text.strip():
                self.blocks.append((text.rstrip(), ""))
        elif tag and tag not in _HTML_SKIPPED:
            block = tag in _HTML_BLOCKS
            if block:
                self.flush()
            if tag == "li":
                self.marker = _list_marker(element)
            self.words.append(element.text or "")
            for child in element:
                self.walk(child)
            if block:
                self.flush()
        self.words.append(element.tail or "")


def _list_marker(item: Any) -> str:
    """`- ` for an item of an unordered list, `N. ` for the Nth item of an ordered one."""
    parent = item.getparent()
    if parent is None or _tag(parent) != "ol":
        return "- "
    number = 1 + sum(1 for sibling in item.itersiblings(preceding=True) if _tag(sibling) == "li")
    return f"{number}. "
