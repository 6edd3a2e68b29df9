"""Chunking loses no text, respects the token budget, and keeps ids and hashes stable."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

from raft.backends.tokens import encoding
from raft.chunking import (
    Chunk,
    ChunkStats,
    chunk_corpus,
    chunk_document,
    reassemble,
    split_text,
)
from raft.errors import RaftError, UsageError
from raft.files import read_jsonl, write_jsonl
from raft.paths import Persona

ESSAYS = Path(__file__).resolve().parent.parent / "data" / "sample" / "essays"
WORDS = [
    "repair", "radio", "kettle", "solder", "wire", "clock", "ledger", "quiet", "hands", "screw",
    "glue", "patience", "bench", "drawer", "valve", "spring", "hinge", "thread", "needle", "lamp",
    "fuse",
]  # fmt: skip


def tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + rng.choice(".!?")


def paragraph(rng: random.Random, sentences: int) -> str:
    return " ".join(sentence(rng, rng.randint(4, 14)) for _ in range(sentences))


def essay(seed: int, paragraphs: int = 12, sentences: tuple[int, int] = (1, 6)) -> str:
    rng = random.Random(seed)
    return "\n\n".join(paragraph(rng, rng.randint(*sentences)) for _ in range(paragraphs))


def long_line(seed: int = 0) -> str:
    """About 3,000 tokens on one line: no punctuation, no newline."""
    rng = random.Random(seed)
    line = " ".join(rng.choice(WORDS) for _ in range(3000))
    assert tokens(line) >= 3000 and not re.search(r"[.!?\n]", line)
    return line


def accented() -> str:
    rng = random.Random(7)
    emoji_run = "".join(rng.choice("😀🔧🧵🫖éàüñß漢字") for _ in range(1500))
    prose = "Où est la bouilloire ? Ça marche déjà ! Señor Müller répare l'horloge… 🔧🔧 Fin."
    return f"{prose}\n\n{emoji_run}\n\n{prose} {prose}\n\nÆble ønsker ære. 🫖"


def corpus() -> dict[str, str]:
    return {
        "paragraphs": essay(1),
        "long-line": long_line(),
        "no-spaces": "x" * 5000 + "ü" * 2000,
        "non-ascii": accented(),
        "windows": essay(2).replace("\n", "\r\n").replace(". ", ".\r\n"),
        "padded": "\n\n   \t" + essay(3, paragraphs=4) + "  \n\n \n",
        "short": "Short.",
        "single-word": "word",
    }


def doc(doc_id: str, content: str, title: str = "Same title") -> dict:
    return {
        "id": doc_id,
        "title": title,
        "link": f"https://example.com/{doc_id}",
        "date": "2024-01-05",
        "content": content,
        "source": "test",
    }


def check_chunks(content: str, chunks: list[Chunk], max_tokens: int) -> None:
    """Everything a chunk list promises about the document it came from."""
    assert reassemble(chunks) == content
    for part, chunk in enumerate(chunks):
        assert chunk.part == part and chunk.total_parts == len(chunks)
        assert chunk.text == content[chunk.start : chunk.end]
        assert chunk.n_tokens == tokens(chunk.text) <= max_tokens
        if part == 0:
            assert chunk.start == 0 and chunk.overlap == 0
        else:
            previous = chunks[part - 1]
            assert chunk.start + chunk.overlap == previous.end
            assert previous.start < chunk.start  # progress, and never the whole previous chunk
    assert chunks[-1].end == len(content)


@pytest.mark.parametrize("max_tokens,overlap_tokens", [(512, 64), (128, 32), (16, 0), (40, 19)])
def test_every_document_reassembles_exactly_within_budget(max_tokens, overlap_tokens):
    for name, content in corpus().items():
        chunks = chunk_document(doc(name, content), max_tokens, overlap_tokens)
        check_chunks(content, chunks, max_tokens)
        spans = split_text(content, max_tokens, overlap_tokens)
        assert spans == [(c.start, c.end, c.overlap) for c in chunks]


def test_blank_documents_give_no_chunks():
    for content in ("", "   ", "\n\n\t \r\n"):
        assert chunk_document(doc("blank", content)) == []
        assert split_text(content) == []
    assert chunk_document({"id": "none", "title": "t", "link": "l", "date": None}) == []


def test_a_long_line_is_cut_at_token_boundaries_and_fills_chunks():
    content = long_line()
    chunks = chunk_document(doc("long", content), 512, 64)
    check_chunks(content, chunks, 512)
    assert len(chunks) >= 6
    # No sentence to repeat inside one long sentence; each piece fills the budget.
    assert all(c.overlap == 0 for c in chunks)
    assert all(c.n_tokens >= 500 for c in chunks[:-1])


def test_cuts_never_split_a_character():
    content = accented()
    ids = encoding().encode_ordinary(content)
    pieces = encoding().decode_tokens_bytes(ids)
    # The encoding does cut characters between tokens here, so the cuts must step around them.
    assert any(not _is_utf8(piece) for piece in pieces)
    for max_tokens in (16, 64, 200):
        chunks = chunk_document(doc("accents", content), max_tokens, max_tokens // 4)
        check_chunks(content, chunks, max_tokens)
        assert "\ufffd" not in "".join(c.text for c in chunks)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_windows_line_endings_and_padding_survive():
    for name in ("windows", "padded"):
        content = corpus()[name]
        chunks = chunk_document(doc(name, content), 64, 16)
        check_chunks(content, chunks, 64)
        assert len(chunks) > 1
    windows = chunk_document(doc("w", corpus()["windows"]), 64, 16)
    # A chunk never ends between \r and \n.
    assert all(not c.text.endswith("\r") for c in windows)


def test_ids_are_unique_across_documents_with_the_same_title_and_content():
    content = essay(4)
    rows = [c for n in range(3) for c in chunk_document(doc(f"doc-{n}", content), 64, 16)]
    assert len({c.id for c in rows}) == len(rows)
    assert {c.id for c in rows if c.doc_id == "doc-1"} == {
        f"doc-1:{part}" for part in range(rows[0].total_parts)
    }


def test_rechunking_gives_the_same_ids_and_hashes():
    for name, content in corpus().items():
        first = chunk_document(doc(name, content), 128, 32)
        again = chunk_document(doc(name, content), 128, 32)
        assert [(c.id, c.hash) for c in first] == [(c.id, c.hash) for c in again]
        assert all(re.fullmatch(r"[0-9a-f]{16}", c.hash) for c in first)


def test_chunks_end_at_paragraph_breaks_when_paragraphs_fit():
    content = essay(5, paragraphs=30, sentences=(1, 5))
    max_tokens = 128
    assert all(tokens(p) <= max_tokens for p in content.split("\n\n"))
    chunks = chunk_document(doc("p", content), max_tokens, 32)
    check_chunks(content, chunks, max_tokens)
    assert len(chunks) > 5
    for chunk in chunks[:-1]:
        assert chunk.text.endswith("\n\n")
    # Chunks are packed, several paragraphs each: the next paragraph (and its break) would not
    # have fitted, give or take the few tokens by which planning overestimates joined sentences.
    assert sum(c.text[c.overlap :].count("\n\n") >= 2 for c in chunks) > len(chunks) / 2
    for chunk in chunks[:-1]:
        following = content.find("\n\n", chunk.end)
        extended = content[chunk.start : len(content) if following < 0 else following + 2]
        assert tokens(extended) > max_tokens - 8


def test_long_paragraphs_are_cut_at_sentence_ends():
    content = paragraph(random.Random(6), 60)
    chunks = chunk_document(doc("one-paragraph", content), 100, 0)
    check_chunks(content, chunks, 100)
    assert len(chunks) > 3
    assert all(re.search(r"[.!?] $", c.text) for c in chunks[:-1])


def test_overlaps_are_whole_sentences_from_the_end_of_the_previous_chunk():
    content = essay(8, paragraphs=20, sentences=(3, 8))
    overlap_tokens = 40
    chunks = chunk_document(doc("o", content), 128, overlap_tokens)
    check_chunks(content, chunks, 128)
    assert all(c.overlap > 0 for c in chunks[1:])  # sentences here are short enough to repeat
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        repeated = chunk.text[: chunk.overlap]
        assert previous.text.endswith(repeated)
        assert tokens(repeated) <= overlap_tokens
        # Starts a sentence: after a sentence end and its whitespace, at a capital letter.
        assert re.search(r"[.!?]\s+$", content[: chunk.start]) and repeated[0].isupper()
        assert re.search(r"[.!?]\s*$", repeated)


def test_no_overlap_when_asked_for_none():
    content = essay(9, paragraphs=20)
    chunks = chunk_document(doc("z", content), 64, 0)
    check_chunks(content, chunks, 64)
    assert all(c.overlap == 0 for c in chunks)


def test_an_edit_changes_only_the_hashes_of_chunks_that_hold_it():
    content = essay(10, paragraphs=20, sentences=(2, 4))
    before = chunk_document(doc("e", content), 128, 32)
    middle = before[len(before) // 2]
    # Swap one word for another of one token, in the first new sentence of a middle chunk.
    at = middle.start + middle.overlap + middle.text[middle.overlap :].index(" ") + 1
    word = re.match(r"\w+", content[at:])[0]
    replacement = "lamp" if word != "lamp" else "fuse"
    edited = content[:at] + replacement + content[at + len(word) :]
    after = chunk_document(doc("e", edited), 128, 32)
    assert [c.id for c in after] == [c.id for c in before]
    changed = {b.id for b, a in zip(before, after, strict=True) if b.hash != a.hash}
    holding = {c.id for c in before if c.start <= at < c.end}
    assert middle.id in changed and changed == holding
    retitled = chunk_document(doc("e", content, title="A new title"), 128, 32)
    assert all(b.hash != r.hash for b, r in zip(before, retitled, strict=True))


def test_chunk_corpus_writes_chunks_jsonl(tmp_path):
    persona = Persona("t", tmp_path / "t")
    documents = [doc(name, content) for name, content in corpus().items()]
    documents.append(doc("twin", documents[0]["content"]))  # same title, same content
    documents.append(doc("blank", "  \n "))
    documents[1]["paywalled"] = True
    write_jsonl(persona.corpus, documents)
    progress = Progress(console=Console(file=io.StringIO()))
    stats = chunk_corpus(persona, 128, 32, progress=progress)
    rows = list(read_jsonl(persona.chunks))
    (task,) = progress.tasks
    assert (task.description, task.completed, task.total) == (
        "chunking",
        len(documents),
        len(documents),
    )
    assert stats == ChunkStats(len(documents), len(rows), sum(r["n_tokens"] for r in rows))
    assert len({r["id"] for r in rows}) == len(rows)
    assert set(rows[0]) == {
        "id", "doc_id", "part", "total_parts", "title", "link", "date", "text", "n_tokens",
        "start", "end", "overlap", "hash",
    }  # fmt: skip
    for source in documents:
        mine = [Chunk(**r) for r in rows if r["doc_id"] == source["id"]]
        if not source["content"].strip():
            assert mine == []
            continue
        check_chunks(source["content"], mine, 128)
        assert {(c.title, c.link, c.date) for c in mine} == {
            (source["title"], source["link"], source["date"])
        }
    # Without a progress display it writes the same file.
    before = persona.chunks.read_text(encoding="utf-8")
    assert chunk_corpus(persona, 128, 32) == stats
    assert persona.chunks.read_text(encoding="utf-8") == before
    assert all(json.loads(line) for line in before.splitlines())


def test_chunk_corpus_needs_a_corpus(tmp_path):
    persona = Persona("t", tmp_path / "t")
    with pytest.raises(RaftError, match=r"no corpus at .*corpus\.jsonl: run `raft fetch t` first"):
        chunk_corpus(persona)
    assert not persona.chunks.exists()


def test_chunk_corpus_rejects_repeated_document_ids(tmp_path):
    persona = Persona("t", tmp_path / "t")
    write_jsonl(persona.corpus, [doc("a", "One."), doc("a", "Two.")])
    with pytest.raises(RaftError, match="two documents have the id 'a'"):
        chunk_corpus(persona)
    assert not persona.chunks.exists()


@pytest.mark.parametrize(
    "max_tokens,overlap_tokens", [(15, 0), (0, 0), (512, -1), (512, 256), (100, 50), (16, 8)]
)
def test_bad_parameters_are_usage_errors(tmp_path, max_tokens, overlap_tokens):
    persona = Persona("t", tmp_path / "t")
    write_jsonl(persona.corpus, [doc("a", "One.")])
    with pytest.raises(UsageError):
        chunk_corpus(persona, max_tokens, overlap_tokens)
    with pytest.raises(UsageError):
        split_text("One.", max_tokens, overlap_tokens)
    assert not persona.chunks.exists()


def sample_essays() -> list[tuple[str, str]]:
    essays = []
    for path in sorted(ESSAYS.glob("*.md")):
        _, front, body = path.read_text(encoding="utf-8").split("---", 2)
        assert "title:" in front
        essays.append((path.stem, body))
    return essays


def test_sample_essays_reassemble_exactly():
    essays = sample_essays()
    assert len(essays) >= 30
    for name, body in essays:
        chunks = chunk_document(doc(name, body), 128, 32)
        check_chunks(body, chunks, 128)
        assert len(chunks) > 1
