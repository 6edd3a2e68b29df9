"""How good the memories are, measured against the essays each answer really draws on.

A transcript may name, per exchange, the essays its answer draws on ("sources"). Against
them: did retrieval find those essays among its k memories (recall@k), and did the pass-1
judge keep the memories from them and drop the rest (precision and recall)? Counts travel
with the rates, so that a judge that keeps everything shows up as exactly that. The cheap
gate is reported beside them: how many rephrasings each reason dropped, with examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from raft.memories import GATES
from raft.memory import Memory

if TYPE_CHECKING:
    from raft.dataset import Sample

EXAMPLES = 3  # gated rephrasings kept per reason


def _slug(link: str) -> str:
    """The last path segment of a link: ".../p/ten-notes-on-screws/" -> "ten-notes-on-screws"."""
    path = urlsplit(link).path if "//" in link else link
    return path.rstrip("/").rsplit("/", 1)[-1]


def source_match(memory: Memory, sources: Iterable[str]) -> bool:
    """Whether the memory comes from one of the essays named: by link, doc id or link slug."""
    link = memory.link.rstrip("/")
    names = {link, memory.doc_id, _slug(memory.link)} - {""}
    return any(source.strip().rstrip("/") in names for source in sources)


@dataclass
class MemoryQuality:
    """Retrieval and judge quality against the answers' sources, and what the gate dropped.

    Rates are None where there is nothing to divide by (no exchange with sources, no memory
    judged useful, no relevant memory retrieved)."""

    k: int  # memories retrieved per exchange that recall@k counts
    exchanges: int = 0  # exchanges seen
    exchanges_with_sources: int = 0  # the ones retrieval and judge are measured on
    sources: int = 0  # essays named, summed over those exchanges
    sources_found: int = 0  # of which among the retrieved memories' documents
    recall_at_k: float | None = None  # share of an exchange's sources found, averaged
    retrieved: int = 0  # memories retrieved for exchanges with sources
    judged: int = 0  # of which sent to the judge (not gated, no error)
    useful: int = 0  # of which judged useful from the question (pass 1)
    relevant: int = 0  # retrieved memories from a source essay
    relevant_useful: int = 0  # of which judged useful
    judge_precision: float | None = None  # relevant_useful / useful
    judge_recall: float | None = None  # relevant_useful / relevant
    memories: int = 0  # memories of every exchange, sources or not: what the gate saw
    gated: dict[str, int] = field(default_factory=dict)  # reason -> memories dropped
    examples: dict[str, list[str]] = field(default_factory=dict)  # reason -> rephrasings

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def memory_quality(
    exchanges: Iterable[tuple[Sequence[Memory], Sequence[str]]], k: int
) -> MemoryQuality:
    """Quality over (memories retrieved for an exchange, in retrieval order; the sources its
    answer draws on) pairs. Retrieval and judge are measured on the first `k` memories of
    the exchanges that have sources; the gate on every memory of every exchange."""
    quality = MemoryQuality(k=k)
    gated: Counter[str] = Counter()
    recalls: list[float] = []
    for memories, sources in exchanges:
        quality.exchanges += 1
        for memory in memories:
            quality.memories += 1
            if memory.gate:
                gated[memory.gate] += 1
                examples = quality.examples.setdefault(memory.gate, [])
                if len(examples) < EXAMPLES and memory.rephrased not in examples:
                    examples.append(memory.rephrased)
        names = list(dict.fromkeys(s for s in sources if s.strip()))
        if not names:
            continue
        top = list(memories)[:k]
        quality.exchanges_with_sources += 1
        found = sum(any(source_match(m, [name]) for m in top) for name in names)
        quality.sources += len(names)
        quality.sources_found += found
        recalls.append(found / len(names))
        for memory in top:
            relevant = source_match(memory, names)
            quality.retrieved += 1
            quality.judged += not (memory.gate or memory.error)
            quality.useful += bool(memory.useful)
            quality.relevant += relevant
            quality.relevant_useful += relevant and bool(memory.useful)
    quality.recall_at_k = round(sum(recalls) / len(recalls), 4) if recalls else None
    quality.judge_precision = _rate(quality.relevant_useful, quality.useful)
    quality.judge_recall = _rate(quality.relevant_useful, quality.relevant)
    order = {reason: n for n, reason in enumerate(GATES)}
    quality.gated = dict(sorted(gated.items(), key=lambda item: order.get(item[0], len(order))))
    quality.examples = {reason: quality.examples[reason] for reason in quality.gated}
    return quality


def sample_quality(samples: Sequence[Sample], k: int) -> dict[str, Any]:
    """`memory_quality` of ft:gen's samples, as the JSON-ready dict stats.json keeps under
    "quality": each sample with the sources its transcript names for its exchange (none for
    synthetic samples, which count for the gate only). Oracle memories are not retrieval's."""
    return memory_quality([(s.retrieved(), s.sources) for s in samples], k).as_dict()
