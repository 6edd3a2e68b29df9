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
from typing import TYPE_CHECKING, TextIO, TypeVar
from urllib.parse import urlsplit

from raft.backends.embed import Embedder
from raft.config import load_config, update_config
from raft.console import Tally
from raft.errors import RaftError, UsageError
from raft.files import read_jsonl, write_failed
from raft.paths import Persona
from raft.scrub import Scrubber
from raft.sources import Document, Failure, Item, Skipped, link_id
from raft.sources.budget import file_limits
from raft.sources.feeds import feed_documents, feed_problem, parse_feed
from raft.sources.http import Fetcher, FetchError
from raft.sources.local import local_documents
from raft.sources.pages import extract_article, find_feed_link
from raft.sources.substack import archive_page, substack_documents
from raft.store import ProgressFn, Store, SyncStats, require_chunks
from raft.transcripts import sync_interviews
from raft.workspace import Workspace

if TYPE_CHECKING:
    from rich.progress import Progress

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class FetchSummary:
    new: int = 0
    by_link: int = 0  # already in the corpus: a document with this link is there
    by_text: int = 0  # already in the corpus: a document without a link, whose text is there
    paywalled: int = 0
    failures: list[Failure] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # every source read
    sources_ok: list[str] = field(default_factory=list)
    web_failed: bool = False  # a web source failed (the network or a server), not a local one
    scrubbed: Counter[str] | None = None  # with --scrub: what was replaced, by kind

    @property
    def skipped(self) -> int:
        return self.by_link + self.by_text


class CorpusFile:
    """corpus.jsonl, with the links and texts it already holds; the file is opened (and made)
    only when the first new document is written, so a fetch that finds nothing writes nothing.

    A document with a link is known by its link: posts with the same text ("Test", a weekly
    "#caturday") are each kept. Only a document without a link is known by its text."""

    def __init__(self, path: Path):
        self.path = path
        self.links: set[str] = set()
        self.link_ids: set[str] = set()  # ids of links as fetched, of documents scrubbed since
        self.hashes: set[str] = set()
        self._handle: TextIO | None = None
        if path.exists():
            self._drop_torn_tail()
            for row in read_jsonl(path):
                self.links.add(row.get("link") or "")
                self.link_ids.add(row.get("unscrubbed_id") or "")
                self.hashes.add(row.get("content_hash") or "")
                self.hashes.add(row.get("unscrubbed_hash") or "")
        for known in (self.links, self.link_ids, self.hashes):
            known.discard("")

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
        """A document with this link is in the corpus, scrubbed or as fetched."""
        return bool(link) and (link in self.links or link_id(link) in self.link_ids)

    def known(self, doc: Document, fetched: Document | None = None) -> str | None:
        """Why the document is already in the corpus ("link" or "text"), or None if it is new.

        `fetched` is the document as read, when `doc` is its scrubbed copy: either one known
        makes it known, so fetches with and without --scrub never add one beside the other."""
        versions = (doc, fetched or doc)
        if doc.link:
            return "link" if any(self.knows_link(d.link) for d in versions) else None
        return "text" if {d.content_hash for d in versions} & self.hashes else None

    def add(self, doc: Document, fetched: Document | None = None) -> None:
        """Append a new document (see `known`). A scrubbed document also records the hash of
        its text and the id of its link as fetched, so that a later fetch without --scrub
        knows it."""
        row = doc.row()
        if fetched is not None and fetched.content_hash != doc.content_hash:
            row["unscrubbed_hash"] = fetched.content_hash
        if fetched is not None and fetched.link != doc.link:
            row["unscrubbed_id"] = fetched.id  # a hash: the link as fetched holds a token
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - close()
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._handle.flush()
        except OSError as exc:
            # A partly written line is cut by the next run's _drop_torn_tail.
            raise write_failed(self.path, exc) from exc
        self.links.add(doc.link)
        self.link_ids.add(row.get("unscrubbed_id", ""))
        self.hashes.update((doc.content_hash, row.get("unscrubbed_hash", "")))
        for known in (self.links, self.link_ids, self.hashes):
            known.discard("")

    def close(self) -> None:
        if self._handle is None:
            return
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
    return list(load_config(persona).sources or [f"https://{persona.name}.substack.com"])


def _local_path(persona: Persona, source: str) -> Path | None:
    """A source that names an existing path: as given, or relative to the persona folder."""
    if "://" in source:
        return None
    for path in (Path(source).expanduser(), persona.root / source):
        if path.exists():
            return path
    return None


def _record_sources(persona: Persona, sources: Iterable[str]) -> None:
    recorded = list(load_config(persona).sources or [])
    added = [source for source in dict.fromkeys(sources) if source not in recorded]
    if added:
        update_config(persona, sources=recorded + added)


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
            found = False
            for item in local_documents(path, source, self.on_total, self.on_done):
                found = True
                yield item
            if not found:
                yield Failure(source, "a folder with no file to read")
            return
        url = _web_url(source)
        if url is None:
            yield Failure(source, _not_a_source(source))
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


def _looks_like_path(source: str) -> bool:
    return "://" not in source and (source[:1] in "/.~" or "." not in source.split("/")[0])


def _web_url(source: str) -> str | None:
    """The http(s) URL a source that is not an existing path names, or None if it names none."""
    if _looks_like_path(source):
        return None
    url = source if "://" in source else f"https://{source}"
    return url if urlsplit(url).scheme in ("http", "https") else None


def _not_a_source(source: str) -> str:
    return "no such file or folder" if _looks_like_path(source) else "not an http(s) URL"


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
    """Add the document, scrubbed first when asked, unless the corpus has it; only what is
    written is counted."""
    fetched = doc
    before = scrubber.counts.copy() if scrubber else Counter()
    if scrubber is not None:
        doc = scrub_document(doc, scrubber)
    why = corpus.known(doc, fetched)
    if why is not None:
        summary.by_link += why == "link"
        summary.by_text += why == "text"
        return False
    corpus.add(doc, fetched if scrubber else None)
    if scrubber is not None and summary.scrubbed is not None:
        summary.scrubbed.update(scrubber.counts - before)
    return True


def fetch_corpus(
    persona: Persona,
    sources: Iterable[str] = (),
    per_host: int = 4,
    progress: Progress | None = None,
    scrubber: Scrubber | None = None,
) -> FetchSummary:
    """Fetch every source into corpus.jsonl; sources given explicitly are recorded once the
    fetch has read something. With a scrubber, personal data in each new document's title
    and text is replaced first. Nothing is written when nothing is fetched."""
    check_per_host(per_host)
    file_limits()  # a bad budget in the environment stops the fetch before it reads anything
    given = list(sources)
    chosen = given or default_sources(persona)
    summary = FetchSummary(sources=chosen, scrubbed=Counter() if scrubber else None)
    fetcher = Fetcher(per_host=per_host)
    corpus = CorpusFile(persona.corpus)
    tally = Tally(progress, "fetching", 0)
    run = Fetch(persona, fetcher, corpus, tally.grow, tally.advance)
    try:
        for source in chosen:
            tally.describe(f"fetching {source}")
            before = (summary.new, summary.skipped, len(summary.failures))
            for item in run.documents(source):
                if isinstance(item, Failure):
                    summary.failures.append(item)
                elif isinstance(item, Skipped):
                    summary.by_link += 1
                elif _add(corpus, item, scrubber, summary):
                    summary.new += 1
                    summary.paywalled += item.paywalled
            read, failed = _outcome(summary, before)
            if read or not failed:  # a source that gave nothing but failures is not kept
                summary.sources_ok.append(source)
            if failed and _local_path(persona, source) is None and _web_url(source):
                summary.web_failed = True
    finally:
        corpus.close()
        fetcher.close()
    if given and summary.skipped + summary.new:
        _record_sources(persona, [_recordable(persona, s) for s in summary.sources_ok])
    return summary


def _outcome(summary: FetchSummary, before: tuple[int, int, int]) -> tuple[bool, bool]:
    """Whether the source just read gave any document (new or known), and any failure."""
    new, skipped, failures = before
    return (summary.new, summary.skipped) != (new, skipped), len(summary.failures) > failures


def nothing_fetched(summary: FetchSummary) -> RaftError:
    """The error of a fetch that read nothing, naming its source when there was one: exit 2
    when only local files and folders, or sources that name neither a path nor an http(s)
    URL, failed (the input must change); exit 1 when a web source failed or gave nothing
    (the network or a server may recover)."""
    where = f"{summary.sources[0]}: " if len(summary.sources) == 1 else ""
    error = RaftError if summary.web_failed or not summary.failures else UsageError
    return error(f"{where}nothing fetched; the corpus is unchanged")


def embed_corpus(
    persona: Persona,
    embedder_spec: str | None = None,
    rebuild: bool = False,
    progress: ProgressFn | None = None,
    embedder: Embedder | None = None,
) -> SyncStats:
    """`raft embed`: sync chunks.jsonl into the collection; `embedder` overrides the spec."""
    require_chunks(persona)
    if embedder is None:
        embedder = Workspace.open(persona, embedder=embedder_spec).embedder
    store = Store(persona, embedder)
    stats = store.sync(read_jsonl(persona.chunks), progress, rebuild=rebuild)
    sync_interviews(persona, store)
    return stats
