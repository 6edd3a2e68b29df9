"""The `raft chunk` stage: split each corpus document into token-bounded, overlapping chunks.

A chunk ends at a paragraph break where one fits, else at a sentence end, and is cut inside a
sentence (at a token boundary that is also a character boundary) only when that sentence alone
is longer than `max_tokens`. The next chunk repeats the last whole sentences of the previous one,
up to `overlap_tokens`. No character is dropped: `reassemble(chunk_document(doc))` is the content.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import accumulate, islice, pairwise
from typing import TYPE_CHECKING, Any

from raft.backends.tokens import encoding
from raft.console import Tally
from raft.errors import RaftError, UsageError
from raft.files import count_lines, read_jsonl, write_jsonl
from raft.paths import Persona

if TYPE_CHECKING:
    from rich.progress import Progress

MAX_TOKENS = 512
OVERLAP_TOKENS = 64

# How strongly the end of a unit closes a thought; a chunk ends at the strongest it can reach.
TOKEN, SENTENCE, PARAGRAPH = 0, 1, 2

# A sentence ends after . ! ? or an ellipsis (and any closing quotes or brackets) and whitespace,
# after a CJK full stop with or without whitespace, or at a line break. Every branch starts with a
# fixed character, which lets `re` skip ahead fast; trailing spaces before a line break simply
# stay in the sentence.
_BREAK = re.compile(r"[.!?…][\"'”’)\]»]*\s+|[。！？][」』”’）]*\s*|\n\s*")


@dataclass(frozen=True)
class Chunk:
    """One line of chunks.jsonl: `text == content[start:end]` of document `doc_id`."""

    id: str
    doc_id: str
    part: int
    total_parts: int
    title: str
    link: str
    date: str | None
    text: str
    n_tokens: int
    start: int
    end: int
    overlap: int
    hash: str
    # (first, last) 1-based pages the chunk's text is on, for a paged document (PDF); the
    # key is absent from rows of other documents.
    pages: tuple[int, int] | None = None

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        if self.pages is None:
            del row["pages"]
        return row


@dataclass
class ChunkStats:
    """What `chunk_corpus` did: documents read, chunks written, tokens in those chunks."""

    documents: int = 0
    chunks: int = 0
    tokens: int = 0


@dataclass
class _Units:
    """A document cut into sentences (or pieces of over-long ones), with exact token counts."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    whole: list[bool] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    # Filled by `index()`. joins[k] is 1 where unit k ends in one space that the next unit's
    # first word absorbs when they are joined ("end. " + "Next" encodes as "end", ".", " Next"),
    # so the pair costs a token less than apart. acc[k] sums tokens less joins before unit k,
    # and stops[rank] lists the ends (exclusive) of units at a boundary at least that strong.
    joins: list[int] = field(default_factory=list)
    acc: list[int] = field(default_factory=list)
    stops: dict[int, list[int]] = field(default_factory=dict)

    def index(self, text: str) -> _Units:
        """Fill joins, acc and stops once the units of `text` are all in."""
        self.joins = [
            int(
                text[end - 1] == " "
                and end - 2 >= start
                and not text[end - 2].isspace()
                and end < len(text)
                and not text[end].isnumeric()
            )
            for start, end in zip(self.starts, self.ends, strict=True)
        ]
        self.acc = [0, *accumulate(t - j for t, j in zip(self.tokens, self.joins, strict=True))]
        self.stops = {
            rank: [end for end, strength in enumerate(self.ranks, 1) if strength >= rank]
            for rank in (PARAGRAPH, SENTENCE, TOKEN)
        }
        return self


def check_parameters(max_tokens: int, overlap_tokens: int) -> None:
    """Raise a UsageError unless 16 <= max_tokens and 0 <= overlap_tokens < max_tokens / 2."""
    if max_tokens < 16:
        raise UsageError(f"--max-tokens must be at least 16, not {max_tokens}")
    if not 0 <= overlap_tokens < max_tokens / 2:
        raise UsageError(
            f"--overlap must be at least 0 and under half of --max-tokens ({max_tokens}), "
            f"not {overlap_tokens}"
        )


def _count(texts: list[str]) -> list[int]:
    """Exact token counts of `texts`."""
    # Not encode_ordinary_batch: it hands each string to a thread pool, which for sentence-sized
    # strings costs several times the encoding itself (measured ~10x slower than this loop).
    encode = encoding().encode_ordinary
    return [len(encode(text)) for text in texts]


def _sentences(text: str) -> list[tuple[int, int, int]]:
    """Cut `text` into (start, end, rank) sentences covering it; whitespace ends a sentence."""
    spans: list[tuple[int, int, int]] = []
    start = 0
    for match in _BREAK.finditer(text):
        if start == 0 and not text[: match.start()].strip():
            continue  # leading whitespace belongs to the first sentence
        rank = PARAGRAPH if match.group().count("\n") >= 2 else SENTENCE
        spans.append((start, match.end(), rank))
        start = match.end()
    if start < len(text):
        spans.append((start, len(text), PARAGRAPH))
    elif spans:
        spans[-1] = (spans[-1][0], spans[-1][1], PARAGRAPH)  # the end of text ends a paragraph
    return spans


def _cut_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int, int]]:
    """Cut `text[start:end]` at token boundaries into (start, end, tokens) pieces of <= `limit`.

    A token may end inside a multi-byte character; the cut then moves back to that character's
    start, so no character is split or lost. Each piece is counted again on its own, since a
    cut can change how the text around it encodes.
    """
    enc = encoding()
    sentence = text[start:end]
    data = sentence.encode("utf-8", "surrogatepass")
    char_at = [i for i, byte in enumerate(data) if byte & 0xC0 != 0x80]  # byte offset per char
    token_ends = list(
        accumulate(len(b) for b in enc.decode_tokens_bytes(enc.encode_ordinary(sentence)))
    )

    def cut_at(lo: int, done: int, take: int) -> int:
        """End of a piece from char `lo` holding about `take` tokens after the first `done`."""
        if take <= 0:
            return lo + 1
        if done + take >= len(token_ends):
            return len(char_at)
        byte = token_ends[done + take - 1]
        return max(bisect.bisect_right(char_at, byte) - 1, lo + 1)

    pieces = []
    lo = 0
    while lo < len(char_at):
        done = bisect.bisect_right(token_ends, char_at[lo])  # tokens wholly before char `lo`
        take = limit
        while True:
            hi = cut_at(lo, done, take)
            count = len(enc.encode_ordinary(sentence[lo:hi]))
            # One character is at most 4 tokens, under the 16 that max_tokens is at least.
            if count <= limit or hi == lo + 1:
                break
            take -= max(1, count - limit)
        pieces.append((start + lo, start + hi, count))
        lo = hi
    return pieces


def _units(text: str, max_tokens: int) -> _Units:
    """Sentences of `text` with exact token counts, over-long ones cut into pieces."""
    units = _Units()
    sentences = _sentences(text)
    counts = _count([text[start:end] for start, end, _ in sentences])
    for (start, end, rank), count in zip(sentences, counts, strict=True):
        if count <= max_tokens:
            pieces, whole = [(start, end, count)], True
        else:
            pieces, whole = _cut_long(text, start, end, max_tokens), False
        for index, (piece_start, piece_end, piece_count) in enumerate(pieces):
            units.starts.append(piece_start)
            units.ends.append(piece_end)
            units.ranks.append(rank if index == len(pieces) - 1 else TOKEN)
            units.whole.append(whole)
            units.tokens.append(piece_count)
    return units.index(text)


def _candidates(units: _Units, first: int, new: int, limit: int) -> Iterator[tuple[int, int]]:
    """(first unit, end unit) spans for a chunk whose new text starts at unit `new`, best first.

    Best ends at the strongest boundary; then keeps the most overlap; then holds the most text.
    Token counts are estimated from the units'; the caller checks the real count.
    """
    acc, seen = units.acc, set()
    for rank in (PARAGRAPH, SENTENCE, TOKEN):
        stops = units.stops[rank]
        for start in range(first, new + 1):
            last = bisect.bisect_right(acc, acc[start] + limit) - 1
            at = bisect.bisect_right(stops, last) - 1
            while at >= 0 and stops[at] > new:
                end = stops[at]
                at -= 1
                if _estimate(units, start, end) <= limit and (start, end) not in seen:
                    seen.add((start, end))
                    yield start, end


def _estimate(units: _Units, start: int, end: int) -> int:
    """Tokens of units [start, end) joined: their counts, less the spaces words absorb inside."""
    # The last unit's space has no next word in the chunk to join.
    return units.acc[end] - units.acc[start] + units.joins[end - 1]


def _overlap_start(units: _Units, first: int, end: int, overlap: int) -> int:
    """First unit of the whole sentences ending chunk [first, end) that fit in `overlap` tokens."""
    # Never the whole chunk: a next chunk holding all of it would make it redundant.
    start = end
    while (
        start > first + 1 and units.whole[start - 1] and _estimate(units, start - 1, end) <= overlap
    ):
        start -= 1
    return start


def _pack(
    text: str, units: _Units, max_tokens: int, overlap_tokens: int
) -> list[tuple[int, int, int, int]]:
    """Group units into chunks: (first unit, first new unit, end unit, exact tokens) each."""
    starts, ends, total = units.starts, units.ends, len(units.tokens)
    chunks: list[tuple[int, int, int, int]] = []
    first = new = 0
    while new < total:
        # Plan the rest of the document from estimates, then count each planned chunk for real;
        # a chunk that encodes longer than estimated is rare, and re-planned from there.
        plan = []
        plan_first, plan_new = first, new
        while plan_new < total:
            start, end = next(_candidates(units, plan_first, plan_new, max_tokens))
            plan.append((start, end))
            plan_first, plan_new = _overlap_start(units, start, end, overlap_tokens), end
        counts = _count([text[starts[start] : ends[end - 1]] for start, end in plan])
        for (start, end), count in zip(plan, counts, strict=True):
            too_long = count > max_tokens
            if too_long:
                start, end, count = _fitting(text, units, first, new, max_tokens)
            chunks.append((start, new, end, count))
            first, new = _overlap_start(units, start, end, overlap_tokens), end
            if too_long:
                break  # the rest of the plan followed the chunk that did not fit
    return chunks


def _fitting(
    text: str, units: _Units, first: int, new: int, max_tokens: int
) -> tuple[int, int, int]:
    """The best (first unit, end unit, tokens) whose exact count fits in `max_tokens`."""
    encode = encoding().encode_ordinary
    # The first candidate is the planned one, already counted too long.
    for start, end in islice(_candidates(units, first, new, max_tokens), 1, None):
        count = len(encode(text[units.starts[start] : units.ends[end - 1]]))
        if count <= max_tokens:
            return start, end, count
    # Unreachable: every unit alone was counted to fit, and is a candidate.
    raise RuntimeError("no chunk fits max_tokens")


def _split(text: str, max_tokens: int, overlap_tokens: int) -> list[tuple[int, int, int, int]]:
    """(start, end, overlap characters, tokens) of each chunk of `text`."""
    check_parameters(max_tokens, overlap_tokens)
    if not text.strip():
        return []
    units = _units(text, max_tokens)
    return [
        (units.starts[first], units.ends[end - 1], units.starts[new] - units.starts[first], count)
        for first, new, end, count in _pack(text, units, max_tokens, overlap_tokens)
    ]


def split_text(
    text: str, max_tokens: int = MAX_TOKENS, overlap_tokens: int = OVERLAP_TOKENS
) -> list[tuple[int, int, int]]:
    """(start, end, overlap characters) of each chunk; none for blank text."""
    return [
        (start, end, overlap) for start, end, overlap, _ in _split(text, max_tokens, overlap_tokens)
    ]


def _doc_id(doc: Any) -> str:
    """The document's id as text; a corpus row without one is an error."""
    if not isinstance(doc, dict) or doc.get("id") in (None, ""):
        raise RaftError(f"corpus document without an id: {str(doc)[:80]}")
    return str(doc["id"])


def _hash(
    text: str, title: str, link: str, date: str | None, pages: tuple[int, int] | None = None
) -> str:
    """Fingerprint of what an embedding of the chunk (and its stored metadata) depends on."""
    # A separator keeps ("ab", "c") and ("a", "bc") apart; unpaged chunks hash as they always did.
    fields = [text, title, link, date or ""]
    if pages:
        fields.append(f"{pages[0]}-{pages[1]}")
    joined = "\x1f".join(fields)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _page_starts(doc: dict[str, Any], doc_id: str) -> list[int]:
    """The document's `pages` (where each page starts in its content); empty when unpaged."""
    pages = doc.get("pages") or []
    if not (
        isinstance(pages, list)
        and all(isinstance(at, int) and not isinstance(at, bool) and at >= 0 for at in pages)
        and all(a <= b for a, b in pairwise(pages))
    ):
        raise RaftError(f"corpus document {doc_id}: pages is not a list of rising text offsets")
    return pages


def _page_span(starts: list[int], content: str, start: int, end: int) -> tuple[int, int]:
    """(first, last) 1-based pages of `content[start:end]`, ignoring the whitespace at its ends."""
    text = content[start:end]
    first = start + len(text) - len(text.lstrip())
    last = max(first, end - (len(text) - len(text.rstrip())) - 1)
    # A blank page starts where the next one does, so no character falls on it.
    return max(1, bisect.bisect_right(starts, first)), max(1, bisect.bisect_right(starts, last))


def chunk_document(
    doc: dict[str, Any], max_tokens: int = MAX_TOKENS, overlap_tokens: int = OVERLAP_TOKENS
) -> list[Chunk]:
    """Chunks of one corpus document, ids `doc_id:part`; none when its content is blank."""
    doc_id = _doc_id(doc)
    content = doc.get("content") or ""
    if not isinstance(content, str):
        raise RaftError(f"corpus document {doc_id}: content is not text")
    title, link, date = str(doc.get("title") or ""), str(doc.get("link") or ""), doc.get("date")
    date = None if date is None else str(date)
    starts = _page_starts(doc, doc_id)
    spans = _split(content, max_tokens, overlap_tokens)
    pages = [
        _page_span(starts, content, start, end) if starts else None for start, end, *_ in spans
    ]
    return [
        Chunk(
            id=f"{doc_id}:{part}",
            doc_id=doc_id,
            part=part,
            total_parts=len(spans),
            title=title,
            link=link,
            date=date,
            text=content[start:end],
            n_tokens=count,
            start=start,
            end=end,
            overlap=overlap,
            hash=_hash(content[start:end], title, link, date, pages[part]),
            pages=pages[part],
        )
        for part, (start, end, overlap, count) in enumerate(spans)
    ]


def reassemble(chunks: list[Chunk]) -> str:
    """The document content back from its chunks in order, each overlap counted once."""
    return "".join(chunk.text[chunk.overlap :] for chunk in chunks)


def chunk_corpus(
    persona: Persona,
    max_tokens: int = MAX_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
    progress: Progress | None = None,
) -> ChunkStats:
    """Chunk every document of corpus.jsonl into chunks.jsonl, replacing it atomically."""
    check_parameters(max_tokens, overlap_tokens)
    if not persona.corpus.is_file():
        raise UsageError(f"no corpus at {persona.corpus}: run `raft fetch {persona.name}` first")
    stats = ChunkStats()
    tally = Tally(progress, "chunking", count_lines(persona.corpus))
    documents = (tally.advance() or doc for doc in read_jsonl(persona.corpus))
    write_jsonl(persona.chunks, _rows(persona, documents, stats, max_tokens, overlap_tokens))
    return stats


def _rows(
    persona: Persona,
    documents: Iterable[dict[str, Any]],
    stats: ChunkStats,
    max_tokens: int,
    overlap_tokens: int,
) -> Iterator[dict[str, Any]]:
    """Rows of chunks.jsonl, one document at a time, counted into `stats`."""
    seen: set[str] = set()
    for doc in documents:
        doc_id = _doc_id(doc)
        # Chunk ids derive from document ids, so a repeated one would collide.
        if doc_id in seen:
            raise RaftError(f"{persona.corpus}: two documents have the id {doc_id!r}")
        seen.add(doc_id)
        stats.documents += 1
        for chunk in chunk_document(doc, max_tokens, overlap_tokens):
            stats.chunks += 1
            stats.tokens += chunk.n_tokens
            yield chunk.to_row()
