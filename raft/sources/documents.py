"""Documents as local sources: PDF (`raft.sources.pdf`, pypdf), EPUB (`raft.sources.epub`,
ebooklib) and DOCX (`raft.sources.word`, python-docx), and what their readers share.

A PDF is one document, its lines reflowed into paragraphs (see `raft.sources.pdftext`), which
records where each page starts so chunks can name their pages. An EPUB is one document per
chapter; a DOCX is one document. Headings and list items are kept as Markdown lines. A file
that cannot be read is a `Failure`, never an exception, so one bad file does not stop the fetch
of a folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from raft.dates import normalize_date

_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")


def date_prefix(file: Path) -> str:
    """The `YYYY-MM-DD` a file name starts with, as for other local files; else ""."""
    match = _DATE_PREFIX.match(file.name)
    return normalize_date(match[1]) if match else ""


def join_blocks(blocks: list[tuple[str, str]]) -> str:
    """(text, group) blocks as paragraphs, but consecutive list items (group "list") or table
    rows ("table") on consecutive lines; a plain paragraph's group is ""."""
    parts: list[str] = []
    for number, (text, group) in enumerate(blocks):
        if number:
            parts.append("\n" if group and group == blocks[number - 1][1] else "\n\n")
        parts.append(text)
    return "".join(parts)


def tidy(text: str) -> str:
    """Runs of spaces and tabs made one space in each line; blank lines dropped."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def is_zip(file: Path) -> bool:
    """Whether `file` is a ZIP archive, as EPUB and DOCX files are."""
    import zipfile

    try:
        return zipfile.is_zipfile(file)
    except OSError:
        return False


def reason(exc: Exception) -> str:
    """An exception as a short reason: its message, else its type."""
    return str(exc).strip() or type(exc).__name__
