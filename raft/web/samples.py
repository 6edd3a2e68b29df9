"""The dataset review page's view of `raft.jsonl`: samples with every memory retrieved for
them, their verdicts, and the review marks (raft.review)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from raft.dataset import Sample
from raft.files import read_jsonl
from raft.paths import Persona
from raft.review import Review, load_review


def list_samples(persona: Persona, dataset: str, offset: int, limit: int) -> dict[str, Any]:
    """Samples `offset` to `offset + limit` of the dataset's generic file, read as a stream."""
    folder = persona.dataset(dataset)
    generic = folder / "raft.jsonl"
    if not generic.is_file():
        flags = " --no-memories" if dataset == "plain" else ""
        return {"total": 0, "samples": [], "missing": f"raft ft:gen {persona.name}{flags}"}
    review = load_review(folder)
    shown, total = [], 0
    for total, row in enumerate(read_jsonl(generic), start=1):
        if offset < total <= offset + limit:
            sample = Sample.from_row(row)
            shown.append(sample_json(sample, review))
    return {"total": total, "offset": offset, "samples": shown}


def sample_memories(folder: Path) -> dict[str, frozenset[str]]:
    """Each sample id of the dataset's raft.jsonl with the chunk ids of its memories ({}
    without the file): what a review mark may name. Read again only when the file changes."""
    generic = Path(folder) / "raft.jsonl"
    try:
        stat = generic.stat()
    except FileNotFoundError:
        return {}
    return _sample_memories(generic, (stat.st_ino, stat.st_size, stat.st_mtime_ns))


@lru_cache(maxsize=4)
def _sample_memories(generic: Path, _stamp: tuple[int, int, int]) -> dict[str, frozenset[str]]:
    samples = (Sample.from_row(row) for row in read_jsonl(generic))
    return {s.id: frozenset(m.chunk_id for m in s.memories) for s in samples}


def sample_json(sample: Sample, review: Review) -> dict[str, Any]:
    dropped = review.memories.get(sample.id, set())
    return {
        "id": sample.id,
        "interview": sample.interview,
        "index": sample.index,
        "synthetic": sample.synthetic,
        "question": sample.question,
        "answer": sample.answer,
        "dropped": sample.id in review.samples,
        "memories": [
            {
                "chunk_id": m.chunk_id,
                "title": m.title,
                "date": m.date,
                "link": m.link,
                "text": m.rephrased or m.text,
                "useful": m.useful,
                "useful_reason": m.useful_reason,
                "consistent": m.consistent,
                "consistent_reason": m.consistent_reason,
                "gate": m.gate,
                "error": m.error,
                "kept": m.chunk_id in sample.kept,
                "dropped": m.chunk_id in dropped,
            }
            for m in sample.memories
        ],
    }
