"""The persona's vector store: chunks (and interview memories) in ChromaDB, searched by meaning.

Embedded ChromaDB under `persona.chroma` by default; a Chroma server when `RAFT_CHROMA_URL`
(`http://host:port`) is set. Chroma never embeds anything itself: its default embedding
function downloads a model, so every collection is opened with `embedding_function=None` and
every vector comes from the persona's embedder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from raft.errors import RaftError, UsageError
from raft.paths import Persona

if TYPE_CHECKING:
    from raft.backends.embed import Embedder

CHROMA_URL_ENV = "RAFT_CHROMA_URL"
PAGE = 1000  # records per `get` page when reading what the collection already holds
WINDOW = 8  # embedder batches gathered by `sync` and sorted by length before embedding
# A filtered query looks at this many times k nearest records, unfiltered, before Chroma filters.
LOOKS = (4, 16)

# Called with how many more input records were handled (rich's `advance` fits).
ProgressFn = Callable[[int], None]


@dataclass
class SyncStats:
    """What a sync did: records added, re-embedded, removed, left alone; texts embedded."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    embedded: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Hit:
    """One search result; `distance` is cosine distance (0 = same direction)."""

    id: str
    doc_id: str
    part: int
    text: str
    title: str
    link: str
    date: str
    distance: float
    kind: str


def date_num(date: str | None) -> int:
    """An ISO date as a sortable int ("2021-03-04" -> 20210304); unknown ("" or None) is 0."""
    if not date:
        return 0
    try:
        day = dt.date.fromisoformat(date[:10])
    except ValueError:
        raise RaftError(f"not an ISO date (YYYY-MM-DD): {date!r}") from None
    return day.year * 10000 + day.month * 100 + day.day


def collection_name(persona: Persona) -> str:
    return f"raft-{persona.name}-chunks"


def _settings() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def open_client(persona: Persona) -> Any:
    """A Chroma client: the server at `RAFT_CHROMA_URL` if set, else embedded in the persona."""
    import chromadb

    url = os.environ.get(CHROMA_URL_ENV)
    if not url:
        persona.chroma.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(persona.chroma), settings=_settings())
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RaftError(f"{CHROMA_URL_ENV}={url}: expected http://HOST:PORT")
    ssl = parts.scheme == "https"
    port = parts.port or (443 if ssl else 8000)
    with _reachable(url):
        # The constructor already calls the server (tenant and database checks).
        return chromadb.HttpClient(host=parts.hostname, port=port, ssl=ssl, settings=_settings())


@contextmanager
def _reachable(url: str | None) -> Iterator[None]:
    """Turn "server not there" into a RaftError naming the URL; embedded mode passes through."""
    import httpx

    try:
        yield
    except httpx.TransportError as exc:
        if url is None:
            raise
        raise RaftError(f"cannot reach the Chroma server at {url}: {exc}") from None
    except ValueError as exc:
        # chromadb.HttpClient reports a refused connection as a bare ValueError.
        if url is None or "connect" not in str(exc).lower():
            raise
        raise RaftError(f"cannot reach the Chroma server at {url}: {exc}") from None


def record_metadata(row: dict[str, Any], kind: str) -> dict[str, Any]:
    """Chroma metadata for a chunk-like row; Chroma takes no None, so absent fields are empty."""
    date = row.get("date") or ""
    metadata = {
        "doc_id": str(row.get("doc_id") or row["id"]),
        "part": int(row.get("part") or 0),
        "total_parts": int(row.get("total_parts") or 1),
        "title": str(row.get("title") or ""),
        "link": str(row.get("link") or ""),
        "date": date,
        "date_num": date_num(date),
        "hash": record_hash(row),
        "kind": kind,
    }
    if row.get("pages"):
        # Chroma takes scalars only: "3", or "3–4" for a chunk across pages (of a PDF).
        first, last = row["pages"]
        metadata["pages"] = str(first) if first == last else f"{first}–{last}"
    return metadata


def record_hash(row: dict[str, Any]) -> str:
    """The row's `hash`, or one of its text when the row has none (e.g. interview memories)."""
    return str(row.get("hash") or hashlib.sha256(row["text"].encode("utf-8")).hexdigest())


class Store:
    """One persona's collection `raft-NAME-chunks`, always embedded by `embedder`."""

    def __init__(self, persona: Persona, embedder: Embedder):
        self.persona = persona
        self.embedder = embedder
        self.name = collection_name(persona)
        self.url = os.environ.get(CHROMA_URL_ENV) or None
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = open_client(self.persona)
        return self._client

    def _get(self, check: bool = True) -> Any | None:
        """The collection if it exists, checked against the embedder unless told not to."""
        from chromadb.errors import NotFoundError

        with _reachable(self.url):
            try:
                collection = self.client.get_collection(self.name, embedding_function=None)
            except NotFoundError:
                return None
        if check:
            self._check_embedder(collection)
        return collection

    def _check_embedder(self, collection: Any) -> None:
        built_with = (collection.metadata or {}).get("embedder") or "an unknown embedder"
        current = self.embedder.model_id
        if built_with != current:
            name = self.persona.name
            raise RaftError(
                f"collection {self.name} was built with {built_with}; the current embedder is "
                f"{current}: run `raft embed {name} --rebuild` to re-embed, or choose embedder "
                f"{built_with}"
            )

    def _create(self) -> Any:
        with _reachable(self.url):
            return self.client.create_collection(
                self.name,
                configuration={"hnsw": {"space": "cosine"}},  # a fresh dict: chroma mutates it
                metadata={"embedder": self.embedder.model_id},
                embedding_function=None,
            )

    def drop(self) -> None:
        """Delete the collection if it exists (any embedder)."""
        from chromadb.errors import NotFoundError

        with _reachable(self.url), suppress(NotFoundError):
            self.client.delete_collection(self.name)

    def count(self) -> int:
        """Records in the collection, whatever embedder built it; 0 when it does not exist yet."""
        if self.url is None and not self.persona.chroma.is_dir():
            return 0  # don't create an empty database just to count it
        collection = self._get(check=False)
        if collection is None:
            return 0
        with _reachable(self.url):
            return int(collection.count())

    def documents(self, page: int = PAGE) -> Iterator[tuple[str, str]]:
        """(id, text) of every record, whatever embedder built it, read `page` at a time;
        nothing when the collection does not exist."""
        if self.url is None and not self.persona.chroma.is_dir():
            return  # don't create an empty database just to read it
        collection = self._get(check=False)
        if collection is None:
            return
        offset = 0
        while True:
            with _reachable(self.url):
                batch = collection.get(include=["documents"], limit=page, offset=offset)
            yield from zip(batch["ids"], [doc or "" for doc in batch["documents"]], strict=True)
            if len(batch["ids"]) < page:
                return
            offset += page

    def upsert(self, rows: list[dict[str, Any]], kind: str = "chunk") -> int:
        """Embed rows (`id`, `text`, chunk fields) and upsert them; returns texts embedded."""
        if not rows:
            return 0
        collection = self._get() or self._create()
        return self._upsert(collection, rows, kind)

    def _upsert(self, collection: Any, rows: list[dict[str, Any]], kind: str) -> int:
        vectors = self.embedder.embed([row["text"] for row in rows])
        dim = int(vectors.shape[1])
        metadata = dict(collection.metadata or {})
        if metadata.get("dim") not in (None, dim):
            raise RaftError(
                f"collection {self.name} holds {metadata['dim']}-dimensional vectors but "
                f"{self.embedder.model_id} gives {dim}: run `raft embed {self.persona.name} "
                "--rebuild`"
            )
        with _reachable(self.url):
            if metadata.get("dim") is None:
                collection.modify(metadata={**metadata, "dim": dim})  # modify replaces it whole
            step = self.client.get_max_batch_size()
            for start in range(0, len(rows), step):
                batch = rows[start : start + step]
                collection.upsert(
                    ids=[row["id"] for row in batch],
                    embeddings=vectors[start : start + step],
                    documents=[row["text"] for row in batch],
                    metadatas=[record_metadata(row, kind) for row in batch],
                )
        return len(rows)

    def _existing(self, collection: Any, kind: str) -> dict[str, str]:
        """id -> hash of every record of `kind`, read in pages."""
        found: dict[str, str] = {}
        offset = 0
        with _reachable(self.url):
            while True:
                page = collection.get(
                    where={"kind": kind}, include=["metadatas"], limit=PAGE, offset=offset
                )
                for record_id, meta in zip(page["ids"], page["metadatas"], strict=True):
                    found[record_id] = str((meta or {}).get("hash") or "")
                if len(page["ids"]) < PAGE:
                    return found
                offset += PAGE

    def sync(
        self,
        rows: Iterable[dict[str, Any]],
        progress: ProgressFn | None = None,
        *,
        kind: str = "chunk",
        rebuild: bool = False,
    ) -> SyncStats:
        """Make the records of `kind` match `rows`: embed new or changed ones, drop the rest."""
        if rebuild:
            self.drop()
        collection = self._get() or self._create()
        existing = self._existing(collection, kind)
        stats = SyncStats()
        seen: set[str] = set()
        pending: list[dict[str, Any]] = []

        def flush() -> None:
            # A batch is padded to its longest text, so mixed lengths waste model work (about
            # a fifth on 130-250-token chunks); longest first, as sentence-transformers sorts.
            pending.sort(key=lambda row: len(row["text"]), reverse=True)
            step = self.embedder.batch_size
            for start in range(0, len(pending), step):
                batch = pending[start : start + step]
                stats.embedded += self._upsert(collection, batch, kind)
                if progress is not None:
                    progress(len(batch))
            pending.clear()

        for row in rows:
            record_id = row["id"]
            if record_id in seen:
                raise RaftError(f"{self.name}: id {record_id!r} appears twice in the input")
            seen.add(record_id)
            old = existing.get(record_id)
            if old == record_hash(row):
                stats.unchanged += 1
                if progress is not None:
                    progress(1)
                continue
            if old is None:
                stats.added += 1
            else:
                stats.updated += 1
            pending.append(row)
            if len(pending) >= self.embedder.batch_size * WINDOW:
                flush()
        if pending:
            flush()
        gone = [record_id for record_id in existing if record_id not in seen]
        with _reachable(self.url):
            step = self.client.get_max_batch_size()
            for start in range(0, len(gone), step):
                collection.delete(ids=gone[start : start + step])
        stats.removed = len(gone)
        return stats

    def query(
        self,
        text: str,
        k: int = 6,
        before_date: str | None = None,
        include_undated: bool = True,
        kinds: Iterable[str] | None = None,
        exclude_doc: str | None = None,
    ) -> list[Hit]:
        """The `k` records nearest to `text`, optionally only those dated before `before_date`
        and not from document `exclude_doc`."""
        collection = self._get()
        if collection is None:
            raise RaftError(
                f"no collection {self.name}: run `raft embed {self.persona.name}` first"
            )
        kinds = None if kinds is None else list(kinds)
        if kinds == []:
            return []
        vector = self.embedder.embed([text])
        where = _where(before_date, include_undated, kinds, exclude_doc)
        with _reachable(self.url):
            result = _nearest(collection, vector, k, where)
        hits = [
            Hit(
                id=record_id,
                doc_id=str(meta.get("doc_id", "")),
                part=int(meta.get("part", 0)),
                text=document or "",
                title=str(meta.get("title", "")),
                link=str(meta.get("link", "")),
                date=str(meta.get("date", "")),
                distance=float(distance),
                kind=str(meta.get("kind", "chunk")),
            )
            for record_id, document, meta, distance in zip(
                result["ids"][0],
                result["documents"][0],
                result["metadatas"][0],
                result["distances"][0],
                strict=True,
            )
        ]
        return sorted(hits, key=lambda hit: hit.distance)


def _nearest(collection: Any, vector: Any, k: int, where: dict[str, Any] | None) -> Any:
    """Chroma's `query` result for the `k` records nearest to `vector` that `where` admits.

    Chroma answers a filtered query by first listing every record the filter admits, which
    costs time in proportion to the collection however few hits are asked for (40-200 ms for
    100k records, against 3 ms unfiltered). So the nearest LOOKS[0] * k records are fetched
    unfiltered and filtered here: when k of them pass, they are the k nearest that pass. When
    fewer pass (an early date admits few records), a wider look follows if the share that
    passed promises k, and Chroma filters only when that fails too.
    """
    include = ["documents", "metadatas", "distances"]
    if where is None:
        return collection.query(query_embeddings=vector, n_results=k, include=include)
    for look, times in enumerate(LOOKS):
        wide = collection.query(query_embeddings=vector, n_results=times * k, include=include)
        kept = [n for n, meta in enumerate(wide["metadatas"][0]) if _admits(meta or {}, where)]
        if len(kept) >= k:
            return {key: [[wide[key][0][n] for n in kept[:k]]] for key in ("ids", *include)}
        wider = LOOKS[look + 1] if look + 1 < len(LOOKS) else 0
        if len(kept) * wider < k * times:
            break
    return collection.query(query_embeddings=vector, n_results=k, where=where, include=include)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "$lt": lambda value, bound: value < bound,
    "$gt": lambda value, bound: value > bound,
    "$ne": lambda value, other: value != other,
    "$in": lambda value, options: value in options,
}


def _admits(meta: dict[str, Any], where: dict[str, Any]) -> bool:
    """Whether a record's metadata passes a `_where` filter, decided as Chroma decides it."""
    if "$and" in where:
        return all(_admits(meta, clause) for clause in where["$and"])
    ((key, condition),) = where.items()
    ((op, operand),) = condition.items()
    if key not in meta:
        return op == "$ne"  # Chroma: a missing field is "not equal", never "<", ">", "in"
    return _COMPARE[op](meta[key], operand)


def _where(
    before_date: str | None,
    include_undated: bool,
    kinds: Iterable[str] | None,
    exclude_doc: str | None = None,
) -> dict[str, Any] | None:
    """The Chroma `where` filter; undated records have date_num 0, below every real date."""
    clauses: list[dict[str, Any]] = []
    if before_date:
        cutoff = date_num(before_date)
        if include_undated:
            clauses.append({"date_num": {"$lt": cutoff}})  # 0 < cutoff keeps undated ones
        else:
            clauses.append({"$and": [{"date_num": {"$gt": 0}}, {"date_num": {"$lt": cutoff}}]})
    elif not include_undated:
        clauses.append({"date_num": {"$gt": 0}})
    if kinds is not None:
        clauses.append({"kind": {"$in": list(kinds)}})
    if exclude_doc:
        clauses.append({"doc_id": {"$ne": exclude_doc}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def require_chunks(persona: Persona) -> None:
    if not persona.chunks.is_file():
        raise UsageError(f"no chunks at {persona.chunks}: run `raft chunk {persona.name}` first")


def require_store(persona: Persona, store: Store, hint: str = "") -> None:
    """A stage that recalls memories needs the embed stage first; `hint` offers a way out."""
    if not store.count():
        raise UsageError(
            f"the store of {persona.name!r} is empty: run `raft embed {persona.name}` first{hint}"
        )
