"""The vector store: incremental sync, retrieval by meaning, date filters, embedder guards.

Real MiniLM and real ChromaDB, embedded and as a `chroma run` server on loopback.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest

from raft import store as store_module
from raft.backends.cache import Cache
from raft.backends.embed import CachedEmbedder, LocalEmbedder, make_embedder
from raft.corpus import embed_corpus
from raft.errors import RaftError
from raft.files import write_jsonl
from raft.paths import Persona
from raft.store import Store, date_num
from tests.helpers import BIN, free_port, wait_for_http

pytestmark = pytest.mark.slow

TOPICS = [
    ("bees", "2019-05-01", "Honeybees cluster in the hive through winter, eating stored honey."),
    ("bread", "2020-06-15", "A sourdough starter needs flour, water and a warm kitchen to rise."),
    ("marathon", "2021-09-10", "Training for a marathon means long slow runs every weekend."),
    ("chess", "", "The Sicilian Defence is a sharp reply to the king's pawn opening in chess."),
    ("taxes", "2022-01-01", "A land value tax falls on the site, not on the buildings above it."),
]


def make_chunk(topic: str, date: str, text: str) -> dict:
    return {
        "id": f"{topic}-0",
        "doc_id": topic,
        "part": 0,
        "total_parts": 1,
        "title": f"On {topic}",
        "link": f"https://example.com/{topic}",
        "date": date,
        "text": text,
        "n_tokens": len(text.split()),
        "start": 0,
        "end": len(text),
        "overlap": 0,
        "hash": hashlib.sha256(f"{date}|{text}".encode()).hexdigest(),
    }


def chunks() -> list[dict]:
    return [make_chunk(*topic) for topic in TOPICS]


def uncached() -> CachedEmbedder:
    """MiniLM with no cache, so its counters show exactly what the store asked for."""
    return make_embedder("local")


class QueryPrefixedMiniLM(LocalEmbedder):
    """MiniLM on "query: "-prefixed text: a different embedding space, so a different id."""

    def __init__(self) -> None:
        super().__init__()
        self.model_id = "local:all-MiniLM-L6-v2+query-prefix"

    def embed(self, texts: list[str]) -> np.ndarray:
        return super().embed([f"query: {text}" for text in texts])


@pytest.fixture
def persona(data_dir: Path) -> Persona:
    persona = Persona.named("alice")
    persona.root.mkdir()
    return persona


@pytest.fixture
def embedder(tmp_path: Path) -> CachedEmbedder:
    return make_embedder("local", Cache(tmp_path / "cache.sqlite"))


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory):
    """`chroma run` on 127.0.0.1; yields its URL."""
    folder = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(
            [
                str(BIN / "chroma"),
                "run",
                "--path",
                str(folder / "db"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", process, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_date_num() -> None:
    assert date_num("2021-03-04") == 20210304
    assert date_num("") == 0
    assert date_num(None) == 0
    with pytest.raises(RaftError, match="not an ISO date"):
        date_num("March 2021")


def check_retrieval(store: Store) -> None:
    """The shared behaviour of the embedded and the server-backed store."""
    stats = store.sync(chunks())
    assert (stats.added, stats.embedded, stats.unchanged) == (5, 5, 0)
    assert store.count() == 5

    hits = store.query("How do honeybees survive the cold months?", k=3)
    assert [hit.distance for hit in hits] == sorted(hit.distance for hit in hits)
    top = hits[0]
    assert (top.id, top.doc_id, top.part, top.kind) == ("bees-0", "bees", 0, "chunk")
    assert (top.date, top.link, top.title) == ("2019-05-01", "https://example.com/bees", "On bees")
    assert top.text.startswith("Honeybees cluster")

    # Dated on or after the cutoff is out; undated stays unless asked otherwise.
    before = store.query("anything at all", k=10, before_date="2021-09-10")
    assert {hit.id for hit in before} == {"bees-0", "bread-0", "chess-0"}
    dated = store.query("anything at all", k=10, before_date="2021-09-10", include_undated=False)
    assert {hit.id for hit in dated} == {"bees-0", "bread-0"}
    assert {hit.id for hit in store.query("x", k=10, include_undated=False)} == {
        "bees-0",
        "bread-0",
        "marathon-0",
        "taxes-0",
    }
    # A query about an excluded topic gets the best of what remains.
    assert store.query("running a marathon", k=1, before_date="2021-01-01")[0].id != "marathon-0"


def test_sync_and_query_embedded(persona: Persona, embedder: CachedEmbedder) -> None:
    check_retrieval(Store(persona, embedder))
    assert persona.chroma.is_dir()


def test_query_uses_cosine_distance(persona: Persona, embedder: CachedEmbedder) -> None:
    store = Store(persona, embedder)
    store.sync(chunks())
    text = TOPICS[1][2]
    hits = store.query(text, k=2)
    assert hits[0].id == "bread-0"
    assert hits[0].distance == pytest.approx(0.0, abs=1e-4)
    vectors = embedder.embed([text, hits[1].text])
    assert hits[1].distance == pytest.approx(1 - float(vectors[0] @ vectors[1]), abs=1e-4)


WORDS = [
    "honey",
    "bread",
    "river",
    "garden",
    "market",
    "winter",
    "clock",
    "radio",
    "lamp",
    "thread",
    "needle",
    "bridge",
]


def dated_chunks(n: int) -> list[dict]:
    """`n` short chunks on mixed topics, chunk i dated i days after 2000-01-01."""
    rng = np.random.default_rng(3)
    first = np.datetime64("2000-01-01")
    return [
        make_chunk(f"c{i:03d}", str(first + i), " ".join(rng.choice(WORDS, 6)) + f" {i}.")
        for i in range(n)
    ]


def chroma_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each Chroma query the store runs: "unfiltered" or "filtered"."""
    from chromadb.api.models.Collection import Collection

    ran: list[str] = []
    query = Collection.query

    def counted(collection, *args, **kwargs):
        ran.append("filtered" if kwargs.get("where") else "unfiltered")
        return query(collection, *args, **kwargs)

    monkeypatch.setattr(Collection, "query", counted)
    return ran


@pytest.mark.parametrize(
    ("admitted", "queries"),
    [
        (150, ["unfiltered"]),  # k of the nearest 4k pass the date
        (30, ["unfiltered", "unfiltered"]),  # too few: the nearest 16k are looked at
        (2, ["unfiltered", "filtered"]),  # so few pass that only Chroma's filter can find k
    ],
)
def test_dated_query_is_the_k_nearest_earlier_records(
    persona: Persona,
    embedder: CachedEmbedder,
    monkeypatch: pytest.MonkeyPatch,
    admitted: int,
    queries: list[str],
) -> None:
    rows = dated_chunks(200)
    store = Store(persona, embedder)
    store.sync(rows)
    question = "What did the river teach you about bread and winter?"
    cutoff = rows[admitted]["date"]
    earlier = rows[:admitted]
    vectors = embedder.embed([question] + [row["text"] for row in earlier])
    distances = 1 - vectors[1:] @ vectors[0]
    nearest = [earlier[i]["id"] for i in np.argsort(distances)[:12]]

    ran = chroma_queries(monkeypatch)
    hits = store.query(question, k=12, before_date=cutoff)
    assert [hit.id for hit in hits] == nearest
    assert all(hit.date < cutoff for hit in hits)
    assert ran == queries


def test_sync_is_incremental(persona: Persona, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PAGE", 2)  # existing records are read in several pages
    rows = chunks()
    first = uncached()
    Store(persona, first).sync(rows)
    assert first.texts_embedded == 5

    again = uncached()
    stats = Store(persona, again).sync(rows)
    assert (stats.unchanged, stats.added, stats.updated, stats.removed) == (5, 0, 0, 0)
    assert stats.embedded == 0
    assert (again.calls, again.texts_embedded) == (0, 0)

    rows[2] = make_chunk("marathon", "2021-09-10", "Knitting a wool scarf takes patience.")
    changed = uncached()
    store = Store(persona, changed)
    stats = store.sync(rows)
    assert (stats.updated, stats.unchanged, stats.embedded) == (1, 4, 1)
    assert changed.texts_embedded == 1
    assert store.query("knitting with wool yarn", k=1)[0].id == "marathon-0"

    del rows[0]
    stats = store.sync(rows)
    assert (stats.removed, stats.unchanged, stats.embedded) == (1, 4, 0)
    assert store.count() == 4
    assert "bees-0" not in {hit.id for hit in store.query("honeybees in winter", k=10)}


def test_sync_batches_and_reports_progress(persona: Persona) -> None:
    embedder = uncached()
    embedder.batch_size = 2
    advanced: list[int] = []
    stats = Store(persona, embedder).sync(iter(chunks()), progress=advanced.append)
    assert stats.added == 5
    assert sum(advanced) == 5
    assert embedder.calls == 3  # 2 + 2 + 1


def test_sync_keeps_other_kinds(persona: Persona, embedder: CachedEmbedder) -> None:
    store = Store(persona, embedder)
    store.sync(chunks())
    memory = {"id": "interview-1", "text": "I keep bees on my roof in the city.", "date": ""}
    assert store.upsert([memory], kind="interview") == 1
    stats = store.sync(chunks()[1:])  # drops a chunk, never the interview memory
    assert stats.removed == 1
    assert store.count() == 5
    hits = store.query("beekeeping on a rooftop", k=1, kinds=["interview"])
    assert (hits[0].id, hits[0].kind, hits[0].doc_id) == ("interview-1", "interview", "interview-1")
    assert {hit.kind for hit in store.query("bees", k=10, kinds=["chunk"])} == {"chunk"}


def test_other_embedder_is_refused(persona: Persona, embedder: CachedEmbedder) -> None:
    Store(persona, embedder).sync(chunks())
    other = CachedEmbedder(QueryPrefixedMiniLM())
    message = (
        "collection raft-alice-chunks was built with local:all-MiniLM-L6-v2; the current "
        "embedder is local:all-MiniLM-L6-v2+query-prefix: run `raft embed alice --rebuild` "
        "to re-embed, or choose embedder local:all-MiniLM-L6-v2"
    )
    store = Store(persona, other)
    with pytest.raises(RaftError) as excinfo:
        store.query("bees")
    assert str(excinfo.value) == message
    with pytest.raises(RaftError, match="--rebuild"):
        store.sync(chunks())
    assert other.calls == 0  # refused before any work

    stats = store.sync(chunks(), rebuild=True)
    assert (stats.added, stats.embedded) == (5, 5)
    assert store.query("honeybees in winter", k=1)[0].id == "bees-0"
    with pytest.raises(RaftError, match="built with local:all-MiniLM-L6-v2\\+query-prefix"):
        Store(persona, embedder).query("bees")


def test_query_before_embed(persona: Persona, embedder: CachedEmbedder) -> None:
    store = Store(persona, embedder)
    assert store.count() == 0
    assert not persona.chroma.exists()  # counting creates no database
    with pytest.raises(RaftError, match="run `raft embed alice` first"):
        store.query("bees")


def test_embed_corpus(persona: Persona) -> None:
    with pytest.raises(RaftError, match=r"no chunks at .*chunks.jsonl: run `raft chunk alice`"):
        embed_corpus(persona)

    write_jsonl(persona.chunks, chunks())
    stats = embed_corpus(persona, "local")  # the workspace's embedder, the persona's cache
    assert (stats.added, stats.embedded) == (5, 5)

    embedder = uncached()
    stats = embed_corpus(persona, embedder=embedder)
    assert (stats.unchanged, embedder.calls) == (5, 0)

    embedder = uncached()
    stats = embed_corpus(persona, embedder=embedder, rebuild=True)
    assert (stats.added, embedder.texts_embedded) == (5, 5)


def test_sync_and_query_through_server(
    persona: Persona,
    embedder: CachedEmbedder,
    chroma_server: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAFT_CHROMA_URL", chroma_server)
    store = Store(persona, embedder)
    store.drop()  # the server outlives one test
    check_retrieval(store)
    assert not persona.chroma.exists()  # nothing written beside the persona


def test_unreachable_server(
    persona: Persona, embedder: CachedEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAFT_CHROMA_URL", url)
    with pytest.raises(RaftError, match=f"cannot reach the Chroma server at {url}"):
        Store(persona, embedder).count()
