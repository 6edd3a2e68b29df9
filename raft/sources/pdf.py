"""PDF documents (pypdf): one document of paragraphs per file, where each page starts kept."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from raft.sources import Document, Failure, Item
from raft.sources.budget import FileBudget, OverBudget
from raft.sources.documents import date_prefix, reason
from raft.sources.pdftext import pdf_text

_PDF_DATE = re.compile(r"^(?:D:)?(\d{4})(\d{2})?(\d{2})?")


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
                page_failures.append(Failure(f"{file} (page {number})", reason(exc)))
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
        yield Failure(str(file), f"not a readable PDF: {reason(exc)}")
        return
    yield from page_failures
    content, pages = pdf_text(texts)
    if not content:
        yield Failure(str(file), "the PDF has no extractable text (scanned pages need OCR)")
        return
    yield Document(
        title=title or file.stem,
        link="",
        date=date or date_prefix(file),
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
