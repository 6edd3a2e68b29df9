"""Where an author's writing comes from: Substack, feeds, web pages, local files.

Each source yields `Document`s, or `Failure`s for the items it could not read, so one bad
post never stops a fetch.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    title: str
    link: str  # canonical link; "" for a local file without one
    date: str  # ISO YYYY-MM-DD, or "" when unknown
    content: str
    source: str  # the source it came from, as given to `raft fetch --from`
    paywalled: bool = False  # only a teaser was readable
    # Where pages 1, 2, ... start in `content` (character offsets), for paged documents (PDF);
    # empty for everything else, and then left out of the corpus row.
    pages: tuple[int, ...] = ()

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.content.encode("utf-8")).hexdigest()

    @property
    def id(self) -> str:
        """Stable: from the canonical link, else from the content."""
        return link_id(self.link) if self.link else _short_hash(f"sha256:{self.content_hash}")

    def row(self) -> dict:
        row = {"id": self.id, **asdict(self), "content_hash": self.content_hash}
        if not self.pages:
            del row["pages"]  # rows of unpaged documents stay as they were
        return row


def link_id(link: str) -> str:
    """The id of the document at a canonical link."""
    return _short_hash(f"link:{link}")


def _short_hash(basis: str) -> str:
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Failure:
    where: str  # the URL or file at fault
    reason: str


@dataclass(frozen=True)
class Skipped:
    link: str  # already in the corpus; not fetched again


Item = Document | Failure | Skipped


def read_text(file: Path) -> str | Failure:
    """A local file's text (UTF-8, without a byte-order mark), or the Failure naming why not."""
    try:
        return file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return Failure(str(file), "not UTF-8 text")
    except OSError as exc:
        return Failure(str(file), exc.strerror or str(exc))
