"""The `raft fetch` stage: gather documents from every source into corpus.jsonl.

Documents are appended as they arrive (one whole line, flushed), so an interrupted fetch
keeps what it fetched; a re-run skips every link or local text already in the corpus.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field, replace
from itertools import accumulate
from pathlib import Path
from queue import SimpleQueue
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from raft.config import load_config, save_config
from raft.console import Tally
from raft.errors import UsageError
from raft.files import read_jsonl, write_failed
from raft.paths import Persona
from raft.scrub import Scrubber
from raft.sources import Document, Failure, Item, Skipped
from raft.sources.budget import file_limits
from raft.sources.feeds import feed_documents, feed_problem, parse_feed
from raft.sources.http import Fetcher, FetchError
from raft.sources.local import local_documents
from raft.sources.pages import extract_article, find_feed_link
from raft.sources.substack import archive_page, substack_documents

if TYPE_CHECKING:
    from rich.progress import Progress

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class FetchSummary:
    new: int = 0
    skipped: int = 0
    paywalled: int = 0
    failures: list[Failure] = field(default_factory=list)
    sources_ok: list[str] = field(default_factory=list)
    scrubbed: Counter[str] | None = None  # with --scrub: what was replaced, by kind


class CorpusFile:
    """corpus.jsonl opened for appending, with the links and texts it already holds."""

    def __init__(self, path: Path):
        self.path = path
        self.links: set[str] = set()
        self.hashes: set[str] = set()
        if path.exists():
            self._drop_torn_tail()
            for row in read_jsonl(path):
                self.links.add(row.get("link") or "")
                self.hashes.add(row.get("content_hash") or "")
                self.hashes.add(row.get("unscrubbed_hash") or "")
        self.links.discard("")
        self.hashes.discard("")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise write_failed(path, exc) from exc

    def _drop_torn_tail(self) -> None:
        """A process killed mid-line leaves a partial last line: cut it, keep every whole one."""
        with open(self.path, "rb") as handle:
            end = handle.seek(0, os.SEEK_END)
            cut = end
            while cut > 0:  # back to the last newline, a block at a time
                start = max(0, cut - 65536)
                handle.seek(start)
                block = handle.read(cut - start)
                if (newline := block.rfind(b"\n")) >= 0:
                    cut = start + newline + 1
                    break
                cut = start
        if cut != end:
            try:
                os.truncate(self.path, cut)
            except OSError as exc:
                raise write_failed(self.path, exc) from exc

    def knows_link(self, link: str) -> bool:
        return link in self.links

    def add(self, doc: Document, unscrubbed_hash: str = "") -> bool:
        """Append a new document; False when its link (or, without one, its text) is known.

        A scrubbed document also records the hash of its text as fetched, so that a later
        fetch without --scrub does not add that text again beside it."""
        known = {doc.content_hash, unscrubbed_hash} & self.hashes
        if (doc.link and doc.link in self.links) or known:
            return False
        row = doc.row()
        if unscrubbed_hash and unscrubbed_hash != doc.content_hash:
            row["unscrubbed_hash"] = unscrubbed_hash
        try:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._handle.flush()
        except OSError as exc:
            # A partly written line is cut by the next run's _drop_torn_tail.
            raise write_failed(self.path, exc) from exc
        self.links.add(doc.link)
        self.hashes.update((doc.content_hash, unscrubbed_hash))
        self.hashes.discard("")
        self.links.discard("")
        return True

    def close(self) -> None:
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:
            raise write_failed(self.path, exc) from exc
        finally:
            with suppress(OSError):  # the write error above is the one to report
                self._handle.close()


def default_sources(persona: Persona) -> list[str]:
    """Sources recorded in persona.toml, else the persona's Substack."""
    return list(load_config(persona).get("sources") or [f"https://{persona.name}.substack.com"])


def _local_path(persona: Persona, source: str) -> Path | None:
    """A source that names an existing path: as given, or relative to the persona folder."""
    if "://" in source:
        return None
    for path in (Path(source).expanduser(), persona.root / source):
        if path.exists():
            return path
    return None


def _record_sources(persona: Persona, sources: Iterable[str]) -> None:
    config = load_config(persona)
    recorded = list(config.get("sources") or [])
    for source in sources:
        if source not in recorded:
            recorded.append(source)
    if recorded != config.get("sources"):
        config["sources"] = recorded
        save_config(persona, config)


def _recordable(persona: Persona, source: str) -> str:
    """Local paths are recorded relative to the persona folder when inside it, else absolute."""
    path = _local_path(persona, source)
    if path is None:
        return source
    path = path.resolve()
    root = persona.root.resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


class Fetch:
    """One run of `raft fetch`: sources are read in turn, pages of each concurrently."""

    def __init__(self, persona: Persona, fetcher: Fetcher, corpus: CorpusFile, on_total, on_done):
        self.persona = persona
        self.fetcher = fetcher
        self.corpus = corpus
        self.on_total = on_total  # called with the number of pages about to be read
        self.on_done = on_done  # called once per page read
        self.workers = max(8, fetcher.per_host * 2)

    def map_pages(self, read: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Results of `read` over items, yielded as they complete (bounded by the fetcher).

        Each item is read as soon as `items` gives it: a generator still fetching the list
        (a Substack archive, page by page) overlaps with reading the items it already gave.
        """
        finished: SimpleQueue[Future[R]] = SimpleQueue()
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            pending = 0
            for item in items:
                self.on_total(1)
                pool.submit(read, item).add_done_callback(finished.put)
                pending += 1
                while not finished.empty():  # what is read already, so it is saved early
                    pending -= 1
                    self.on_done()
                    yield finished.get().result()
            for _ in range(pending):
                self.on_done()
                yield finished.get().result()

    def documents(self, source: str) -> Iterator[Item]:
        path = _local_path(self.persona, source)
        if path is not None:
            yield from local_documents(path, source, self.on_total, self.on_done)
            return
        if "://" not in source and (source[:1] in "/.~" or "." not in source.split("/")[0]):
            yield Failure(source, "no such file or folder")
            return
        url = source if "://" in source else f"https://{source}"
        if urlsplit(url).scheme not in ("http", "https"):
            yield Failure(source, "not an existing path or an http(s) URL")
            return
        yield from self._web_documents(url.rstrip("/") if _is_root(url) else url, source)

    def _web_documents(self, url: str, source: str) -> Iterator[Item]:
        known = self.corpus.knows_link
        fetcher = self.fetcher.for_source(url)
        if _is_root(url):
            first = archive_page(fetcher, url, 0)
            if first is not None:
                yield from substack_documents(fetcher, url, first, source, known, self.map_pages)
                return
            if urlsplit(url).netloc.endswith(".substack.com"):
                url = f"{url}/feed"  # the archive endpoint failed: Substack's RSS instead
        try:
            response = fetcher.get(url)
        except FetchError as exc:
            yield Failure(source, str(exc))
            return
        parsed = parse_feed(response.body)
        if parsed is None and "html" in response.content_type.lower():
            feed_url = find_feed_link(response.text, response.url) if _is_root(url) else None
            if feed_url:
                try:
                    parsed = parse_feed(fetcher.get(feed_url).body)
                except FetchError as exc:
                    yield Failure(feed_url, str(exc))
                    return
        if parsed is not None:
            yield from feed_documents(parsed, source, fetcher, known, self.map_pages)
            return
        kind = response.content_type.lower()
        if "xml" in kind or "rss" in kind or "atom" in kind:
            yield Failure(source, feed_problem(response.body))
            return
        if "html" not in kind and response.body.lstrip()[:1] != b"<":
            yield Failure(source, f"neither a feed nor an HTML page ({response.content_type})")
            return
        if known(response.url) or known(url):
            yield Skipped(response.url)
            return
        article = extract_article(response.text, response.url)
        if article is None:
            yield Failure(source, "the page holds no article text")
            return
        yield Document(article.title, response.url, article.date, article.text, source, False)


def _is_root(url: str) -> bool:
    return urlsplit(url).path in ("", "/")


def scrub_document(doc: Document, scrubber: Scrubber) -> Document:
    """The document with personal data in its title, link and text replaced; a paged
    document is scrubbed page by page, so its page offsets still point at the start of each
    page. The id is made from the scrubbed link, so it carries no token either, and links
    that differ only in a personal token (one reader's copy, another's) are one document."""
    title, link = scrubber.scrub(doc.title), scrubber.scrub(doc.link)
    if not doc.pages:
        return replace(doc, title=title, link=link, content=scrubber.scrub(doc.content))
    ends = [*doc.pages[1:], len(doc.content)]
    pages = [scrubber.scrub(doc.content[a:b]) for a, b in zip(doc.pages, ends, strict=True)]
    starts = tuple(accumulate((len(page) for page in pages[:-1]), initial=doc.pages[0]))
    return replace(doc, title=title, link=link, content="".join(pages), pages=starts)


def check_per_host(per_host: int) -> None:
    if per_host < 1:  # 0 would wait forever for a free slot
        raise UsageError("--per-host must be at least 1")


def _add(
    corpus: CorpusFile, doc: Document, scrubber: Scrubber | None, summary: FetchSummary
) -> bool:
    """Add the document, scrubbed first when asked; only what is written is counted."""
    if scrubber is None:
        return corpus.add(doc)
    before = scrubber.counts.copy()
    added = corpus.add(scrub_document(doc, scrubber), unscrubbed_hash=doc.content_hash)
    if added and summary.scrubbed is not None:
        summary.scrubbed.update(scrubber.counts - before)
    return added


def fetch_corpus(
    persona: Persona,
    sources: Iterable[str] = (),
    per_host: int = 4,
    progress: Progress | None = None,
    scrubber: Scrubber | None = None,
) -> FetchSummary:
    """Fetch every source into corpus.jsonl; sources given explicitly are recorded. With a
    scrubber, personal data in each new document's title and text is replaced first."""
    check_per_host(per_host)
    file_limits()  # a bad budget in the environment stops the fetch before it reads anything
    given = list(sources)
    chosen = given or default_sources(persona)
    persona.root.mkdir(parents=True, exist_ok=True)
    summary = FetchSummary(scrubbed=Counter() if scrubber else None)
    fetcher = Fetcher(per_host=per_host)
    corpus = CorpusFile(persona.corpus)
    tally = Tally(progress, "fetching", 0)
    run = Fetch(persona, fetcher, corpus, tally.grow, tally.advance)
    try:
        for source in chosen:
            tally.describe(f"fetching {source}")
            before = (summary.new, summary.skipped)
            source_failed = False
            for item in run.documents(source):
                if isinstance(item, Failure):
                    summary.failures.append(item)
                    source_failed = source_failed or item.where == source
                elif isinstance(item, Skipped):
                    summary.skipped += 1
                elif _add(corpus, item, scrubber, summary):
                    summary.new += 1
                    summary.paywalled += item.paywalled
                else:
                    summary.skipped += 1
            if not source_failed or (summary.new, summary.skipped) != before:
                summary.sources_ok.append(source)
    finally:
        corpus.close()
        fetcher.close()
    if given:
        ok = [_recordable(persona, s) for s in given if s in summary.sources_ok]
        _record_sources(persona, ok)
    return summary
