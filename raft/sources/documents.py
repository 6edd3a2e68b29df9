"""Documents as local sources: PDF (pypdf), EPUB (ebooklib) and DOCX (python-docx).

A PDF is one document, its lines reflowed into paragraphs (see `raft.sources.pdftext`), which
records where each page starts so chunks can name their pages. An EPUB is one document per
chapter; a DOCX is one document. Headings and list items are kept as Markdown lines. A file
that cannot be read is a `Failure`, never an exception, so one bad file does not stop the fetch
of a folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item
from raft.sources.budget import FileBudget, OverBudget
from raft.sources.pdftext import pdf_text

_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?")
_HEADING_STYLE = re.compile(r"heading (\d)", re.I)
_LIST_STYLE = re.compile(r"list (bullet|number)(?: (\d))?", re.I)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"  # WordprocessingML
# The default template of python-docx carries this creation time; a file it wrote without
# setting one says nothing about when its text was written.
_PYTHON_DOCX_TEMPLATE = datetime(2013, 12, 23, 23, 15, tzinfo=UTC)

_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_HTML_SKIPPED = {"head", "script", "style", "template", "nav", "svg", "math"}
# fmt: off
_HTML_BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "header", "hr", "li", "main", "ol", "p", "section",
    "table", "td", "th", "tr", "ul",
}
# fmt: on


def _date_prefix(file: Path) -> str:
    """The `YYYY-MM-DD` a file name starts with, as for other local files; else ""."""
    match = _DATE_PREFIX.match(file.name)
    return normalize_date(match[1]) if match else ""


def _join_blocks(blocks: list[tuple[str, str]]) -> str:
    """(text, group) blocks as paragraphs, but consecutive list items (group "list") or table
    rows ("table") on consecutive lines; a plain paragraph's group is ""."""
    parts: list[str] = []
    for number, (text, group) in enumerate(blocks):
        if number:
            parts.append("\n" if group and group == blocks[number - 1][1] else "\n\n")
        parts.append(text)
    return "".join(parts)


def _tidy(text: str) -> str:
    """Runs of spaces and tabs made one space in each line; blank lines dropped."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------------------------------------
# PDF


def pdf_documents(file: Path, source: str) -> Iterator[Item]:
    """The text of a PDF as one document of paragraphs, where each page starts kept."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    # pypdf logs every oddity it repairs in a damaged file; the fetch reports what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    budget = FileBudget()
    page_failures: list[Failure] = []
    texts: list[str] = []
    # Parsers of arbitrary files raise all kinds of errors on damaged ones; each becomes a
    # Failure naming the file, so the rest of a folder is still fetched.
    try:
        reader = PdfReader(file)
        if reader.is_encrypted and not _decrypted(reader):
            yield Failure(str(file), "encrypted PDF: it needs a password to be read")
            return
        info = reader.metadata or {}
        title = str(_info(info, "/Title")).strip()
        date = _pdf_date(_info(info, "/CreationDate"))
        _spend_page_contents(reader, budget)
        for number, page in enumerate(reader.pages, 1):
            budget.check_time()
            try:
                text = page.extract_text(visitor_operand_before=_time_check(budget)) or ""
            except OverBudget:
                raise
            except Exception as exc:  # noqa: BLE001 - one damaged page, reported below
                page_failures.append(Failure(f"{file} (page {number})", _reason(exc)))
                text = ""
            budget.spend_text(len(text))
            texts.append(text)
    except FileNotDecryptedError:
        yield Failure(str(file), "encrypted PDF: it needs a password to be read")
        return
    except OverBudget as exc:
        yield Failure(str(file), str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - see above
        yield Failure(str(file), f"not a readable PDF: {_reason(exc)}")
        return
    yield from page_failures
    content, pages = pdf_text(texts)
    if not content:
        yield Failure(str(file), "the PDF has no extractable text (scanned pages need OCR)")
        return
    yield Document(
        title=title or file.stem,
        link="",
        date=date or _date_prefix(file),
        content=content,
        source=source,
        pages=pages,
    )


def _spend_page_contents(reader: Any, budget: FileBudget) -> None:
    """Charge what every page's content decodes to, before any page is parsed.

    pypdf's own limits hold for one page; a stream that 20 pages share is parsed 20 times,
    so it counts 20 times. A page whose content cannot be read is reported by its extraction.
    """
    budget.spend_parts(len(reader.pages), "pages")
    for page in reader.pages:
        budget.check_time()
        try:
            contents = page.get_contents()
        except Exception:  # noqa: BLE001 - see above
            continue
        if contents is not None:
            budget.spend_decoded(len(contents.get_data()))


def _time_check(budget: FileBudget) -> Callable[..., None]:
    """A pypdf visitor that stops a page's extraction once the file's time is spent: one page
    may invoke the same form thousands of times."""
    return lambda *_: budget.check_time()


def _decrypted(reader: Any) -> bool:
    """Whether an encrypted PDF opens with the empty password (many are locked only for
    editing); False where it needs another, or its cipher is not available here."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # noqa: BLE001 - e.g. AES without the `cryptography` package
        return False


def _info(info: Any, key: str) -> Any:
    """A document-information entry, resolved (a plain `.get` may give a reference); or ""."""
    return info[key] if key in info else ""  # noqa: SIM401 - `get` does not resolve


def _pdf_date(value: Any) -> str:
    """`YYYY-MM-DD` from a PDF date (`D:YYYYMMDDHHmmSS+hh'mm'`, month and day optional)."""
    match = _PDF_DATE.match(str(value or "").strip())
    if not match:
        return ""
    year, month, day = match[1], match[2] or "01", match[3] or "01"
    try:
        return datetime(int(year), int(month), int(day)).date().isoformat()
    except ValueError:
        return ""


def _is_zip(file: Path) -> bool:
    """Whether `file` is a ZIP archive, as EPUB and DOCX files are."""
    import zipfile

    try:
        return zipfile.is_zipfile(file)
    except OSError:
        return False


def _reason(exc: Exception) -> str:
    """An exception as a short reason: its message, else its type."""
    return str(exc).strip() or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# EPUB


def epub_documents(file: Path, source: str) -> Iterator[Item]:
    """One document per chapter of an EPUB (spine order), titled `Book — Chapter`."""
    if not _is_zip(file):
        yield Failure(str(file), "not a readable EPUB: not a ZIP archive")
        return
    budget = FileBudget()
    try:
        book = _read_epub(file, budget)
        book_title = _epub_field(book, "title") or file.stem
        date = normalize_date(_epub_field(book, "date")) or _date_prefix(file)
        chapters = [text for text in _epub_chapters(book, budget) if text]
    except OverBudget as exc:
        yield Failure(str(file), str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a damaged book is reported, the fetch goes on
        yield Failure(str(file), f"not a readable EPUB: {_reason(exc)}")
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
    return _join_blocks(blocks.blocks)


def _tag(element: Any) -> str:
    """An element's tag without its namespace, lowercase; "" for comments and the like."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


class _Blocks:
    """Paragraph-level blocks of an HTML tree, collected in document order."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, str]] = []  # (text, group), as `_join_blocks` takes them
        self.words: list[str] = []
        self.marker = ""  # a list item's marker, put before its first block

    def flush(self) -> None:
        text = _tidy("".join(self.words))
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


# ---------------------------------------------------------------------------------------------
# DOCX


def docx_documents(file: Path, source: str) -> Iterator[Item]:
    """A Word document as one document: headings as Markdown, lists as `- `/`1. ` lines."""
    if not _is_zip(file):
        yield Failure(str(file), "not a readable DOCX: not a ZIP archive")
        return
    budget = FileBudget()
    try:
        import docx

        # python-docx reads every part whole: their declared sizes are charged before it does.
        budget.spend_decoded(_unzipped_size(file))
        _spend_docx_parts(file, budget)
        document = docx.Document(str(file))
        blocks = list(_docx_blocks(document, budget))
        budget.spend_text(sum(len(text) + 2 for text, _ in blocks))  # with the line breaks
        properties = document.core_properties
        title = (properties.title or "").strip()
        created = properties.created
    except OverBudget as exc:
        yield Failure(str(file), str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - a damaged file is reported, the fetch goes on
        yield Failure(str(file), f"not a readable DOCX: {_reason(exc)}")
        return
    if not blocks:
        yield Failure(str(file), "the DOCX has no text")
        return
    heading = next((text for text, _ in blocks if text.startswith("#")), "")
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    date = "" if created == _PYTHON_DOCX_TEMPLATE else normalize_date(created)
    yield Document(
        title=title or heading.lstrip("#").strip() or file.stem,
        link="",
        date=date or _date_prefix(file),
        content=_join_blocks(blocks),
        source=source,
    )


def _unzipped_size(file: Path) -> int:
    """The sum of the declared sizes of a ZIP archive's members (zipfile reads no more)."""
    import zipfile

    with zipfile.ZipFile(file) as archive:
        return sum(info.file_size for info in archive.infolist())


def _spend_docx_parts(file: Path, budget: FileBudget) -> None:
    """Count the paragraphs and table rows of every XML part, streaming, before python-docx
    builds its tree: each costs it time and memory, and a DOCX of a million empty paragraphs
    is a few hundred kB."""
    import zipfile

    from lxml import etree

    with zipfile.ZipFile(file) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                found = etree.iterparse(
                    member, tag=(f"{_W}p", f"{_W}tr"), resolve_entities=False, no_network=True
                )
                try:
                    for _, element in found:
                        budget.spend_parts(1, "paragraphs and table rows")
                        budget.check_time()
                        element.clear()  # what it held is counted; keep memory flat
                except etree.XMLSyntaxError:
                    continue  # an image, or damage that python-docx reports if it matters


def _docx_blocks(document: Any, budget: FileBudget) -> Iterator[tuple[str, str]]:
    """(text, group) for the paragraphs and table rows of the body in order, as `_join_blocks`
    takes them; a table row is one line of `|`-joined cells."""
    from docx.table import Table

    style_name = _paragraph_style_names(document)
    # The last number of each (list, depth). As in Word, a list's numbering runs on across
    # the paragraphs between its items.
    numbers: dict[tuple[str, int], int] = {}
    for block in document.iter_inner_content():
        budget.check_time()  # for every block: a million empty paragraphs give no text
        if isinstance(block, Table):
            for row in block.rows:
                cells = {cell._tc: cell for cell in row.cells}.values()  # a merged cell once
                texts = (" ".join(cell.text.split()) for cell in cells)
                line = " | ".join(text for text in texts if text)
                if line:
                    yield line, "table"
            continue
        text = _tidy(block.text)
        if not text:
            continue
        style = style_name(block._p.style)
        level = _heading_level(style)
        if level:
            yield f"{'#' * level} {' '.join(text.split())}", ""
            continue
        item = _list_item(block, style)
        if item is None:
            yield text, ""
            continue
        list_id, depth, numbered = item
        for deeper in [key for key in numbers if key[0] == list_id and key[1] > depth]:
            del numbers[deeper]  # a sublist starts again at 1 under its next parent item
        if numbered:
            number = numbers[list_id, depth] = numbers.get((list_id, depth), 0) + 1
            yield f"{'   ' * depth}{number}. {text}", "list"
        else:
            yield f"{'  ' * depth}- {text}", "list"


def _paragraph_style_names(document: Any) -> Callable[[str | None], str]:
    """The name of a paragraph style by its id, as python-docx's `Paragraph.style` finds it,
    from a table made once: python-docx searches every style of the document for each
    paragraph (1.5 ms each, so a long document took minutes)."""
    from docx.enum.style import WD_STYLE_TYPE

    styles = document.styles
    first: dict[str | None, Any] = {}
    for style in styles:
        first.setdefault(style.style_id, style)
    names = {
        style_id: style.name or ""
        for style_id, style in first.items()
        if style.element.type == WD_STYLE_TYPE.PARAGRAPH
    }
    default = styles.default(WD_STYLE_TYPE.PARAGRAPH)
    fallback = (default.name or "") if default is not None else ""
    return lambda style_id: names.get(style_id, fallback) if style_id else fallback


def _heading_level(style: str) -> int:
    """1-6 for the Title and Heading N styles, 0 for any other."""
    if style.lower() == "title":
        return 1
    match = _HEADING_STYLE.fullmatch(style.strip())
    return min(int(match[1]), 6) if match else 0


def _list_item(paragraph: Any, style: str) -> tuple[str, int, bool] | None:
    """(list, depth, numbered) of a list paragraph; None for any other paragraph.

    Word numbers a paragraph itself (`w:numPr`, as its "List Paragraph" style does) or through
    a list style such as "List Number 2".
    """
    properties = paragraph._p.pPr
    numbering = properties.numPr if properties is not None else None
    num_id = numbering.numId.val if numbering is not None and numbering.numId is not None else 0
    match = _LIST_STYLE.fullmatch(style.strip())
    if match:
        return style, int(match[2] or 1) - 1, match[1].lower() == "number"
    if not num_id:  # numId 0 takes the numbering off
        return None
    depth = int(numbering.ilvl.val) if numbering.ilvl is not None else 0
    return str(num_id), depth, _numbered(paragraph, str(num_id), depth)


def _numbered(paragraph: Any, num_id: str, depth: int) -> bool:
    """Whether list `num_id` numbers its items at `depth` (rather than bulleting them)."""
    try:
        numbering = paragraph.part.numbering_part.element
    except (KeyError, NotImplementedError, AttributeError):
        return False  # no numbering part: Word shows no number either
    abstract = numbering.xpath(f'./w:num[@w:numId="{num_id}"]/w:abstractNumId/@w:val')
    if not abstract:
        return False
    formats = numbering.xpath(
        f'./w:abstractNum[@w:abstractNumId="{abstract[0]}"]/w:lvl[@w:ilvl="{depth}"]/w:numFmt/@w:val'
    )
    return bool(formats) and formats[0] not in ("bullet", "none")
