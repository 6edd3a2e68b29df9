"""Word documents (.docx, python-docx): one document per file, headings as Markdown lines,
lists as `- `/`1. ` lines and table rows as `|`-joined cells."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item
from raft.sources.budget import FileBudget, OverBudget
from raft.sources.documents import date_prefix, is_zip, join_blocks, reason, tidy

_HEADING_STYLE = re.compile(r"heading (\d)", re.I)
_LIST_STYLE = re.compile(r"list (bullet|number)(?: (\d))?", re.I)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"  # WordprocessingML
# The default template of python-docx carries this creation time; a file it wrote without
# setting one says nothing about when its text was written.
_PYTHON_DOCX_TEMPLATE = datetime(2013, 12, 23, 23, 15, tzinfo=UTC)


def docx_documents(file: Path, source: str) -> Iterator[Item]:
    """A Word document as one document: headings as Markdown, lists as `- `/`1. ` lines."""
    if not is_zip(file):
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
        yield Failure(str(file), f"not a readable DOCX: {reason(exc)}")
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
        date=date or date_prefix(file),
        content=join_blocks(blocks),
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
    """(text, group) for the paragraphs and table rows of the body in order, as `join_blocks`
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
        text = tidy(block.text)
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
