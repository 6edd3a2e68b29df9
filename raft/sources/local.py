"""Local files and folders: .md (front matter), .txt, .html, corpus .jsonl files, documents
(.pdf, .epub, .docx) and social archives (an X/Twitter `tweets.js`, a Mastodon
`outbox.json`, a Bluesky repository `.car`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from raft.dates import normalize_date
from raft.sources import Document, Failure, Item, read_text
from raft.sources.pages import extract_article
from raft.sources.social import X_PARTS, bluesky_documents, mastodon_documents, x_documents

SUFFIXES = {".md", ".markdown", ".txt", ".html", ".htm", ".jsonl"}
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_DATE_PREFIX = re.compile(r"^(\d{4}-\d{2}-\d{2})")
_HEADING = re.compile(r"\A\s*#\s+(.+)\n")


Reader = Callable[[Path, str], Iterator[Item]]


def special_reader(file: Path) -> Reader | None:
    """The reader of a file that is not plain text: a document or a social archive."""
    name, suffix = file.name.lower(), file.suffix.lower()
    if suffix == ".pdf":
        from raft.sources.pdf import pdf_documents

        return pdf_documents
    if suffix == ".epub":
        from raft.sources.epub import epub_documents

        return epub_documents
    if suffix == ".docx":
        from raft.sources.word import docx_documents

        return docx_documents
    if X_PARTS.fullmatch(name):
        return x_documents
    if name == "outbox.json":
        return mastodon_documents
    if suffix == ".car":
        return bluesky_documents
    return None


def local_files(path: Path) -> list[Path]:
    """The readable files at `path` (a file, or a folder searched recursively), sorted."""
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and (p.suffix.lower() in SUFFIXES or special_reader(p) is not None)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def _text_document(path: Path, text: str, source: str) -> Document:
    meta: dict = {}
    match = _FRONT_MATTER.match(text)
    if match:
        import yaml

        try:
            loaded = yaml.safe_load(match[1])
        except (yaml.YAMLError, RecursionError):  # RecursionError: nested thousands deep
            loaded = None
        if isinstance(loaded, dict):
            meta, text = loaded, text[match.end() :]
    title = str(meta.get("title") or "")
    heading = _HEADING.match(text)
    if not title and heading:
        title, text = heading[1].strip(), text[heading.end() :]
    prefix = _DATE_PREFIX.match(path.name)
    return Document(
        title=title or path.stem,
        link=str(meta.get("link") or meta.get("url") or ""),
        date=normalize_date(meta.get("date")) or (prefix[1] if prefix else ""),
        content=text.strip(),
        source=source,
    )


def _jsonl_documents(path: Path, text: str, source: str) -> Iterator[Item]:
    """The original tool's corpus shape: `title, link, date, content` a line."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            content = str(row["content"]).strip()
        except RecursionError:  # json's decoder gives up on arrays nested thousands deep
            yield Failure(f"{path}:{number}", "JSON nested too deeply")
            continue
        except (ValueError, KeyError, TypeError):
            yield Failure(f"{path}:{number}", "not a JSON object with a `content` field")
            continue
        if content:
            yield Document(
                title=str(row.get("title") or ""),
                link=str(row.get("link") or ""),
                date=normalize_date(row.get("date")),
                content=content,
                source=source,
            )


def local_documents(path: Path, source: str, on_total=None, on_done=None) -> Iterator[Item]:
    """Documents from a local file or folder, in file order; unreadable files are reported."""
    files = local_files(path)
    if on_total:
        on_total(len(files))
    folder = path.resolve() if path.is_dir() else None
    for file in files:
        target = file.resolve()
        if folder is not None and not target.is_relative_to(folder):
            # A link in a folder of writing must not bring in a file from elsewhere.
            yield Failure(str(file), f"a link to {target}, outside {path}: not read")
        else:
            yield from _file_documents(file, source)
        if on_done:
            on_done()


def _file_documents(file: Path, source: str) -> Iterator[Item]:
    reader = special_reader(file)
    if reader is not None:
        yield from reader(file, source)
        return
    text = read_text(file)
    if isinstance(text, Failure):
        yield text
        return
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        yield from _jsonl_documents(file, text, source)
    elif suffix in {".html", ".htm"}:
        article = extract_article(text, file.as_uri())
        if article is None:
            yield Failure(str(file), "the page holds no article text")
        else:
            yield Document(article.title or file.stem, "", article.date, article.text, source)
    elif text.strip():
        yield _text_document(file, text, source)
    else:
        yield Failure(str(file), "empty file")
