"""Review marks on a dataset: samples, or single memories of a sample, a person dropped
after reading finetune/raft.jsonl. They live in the dataset's review.json, an overlay that
`raft ft:gen` applies when it writes the format files; raft.jsonl itself stays as made.

review.json, sorted so that it reads and diffs well:
    {"drop_samples": ["id", ...], "drop_memories": {"sample-id": ["chunk-id", ...]}}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.console import warn
from raft.errors import UsageError
from raft.files import locked, write_json

if TYPE_CHECKING:
    from raft.dataset import Sample

REVIEW_FILE = "review.json"
DROPPED = "dropped in review"  # the useful_reason of a memory dropped in review


@dataclass
class Review:
    samples: set[str] = field(default_factory=set)  # sample ids dropped as training targets
    memories: dict[str, set[str]] = field(default_factory=dict)  # sample id -> chunk ids dropped
    path: Path | None = field(default=None, compare=False)  # the file read, for messages

    def to_row(self) -> dict[str, Any]:
        return {
            "drop_samples": sorted(self.samples),
            "drop_memories": {s: sorted(c) for s, c in sorted(self.memories.items()) if c},
        }


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v for v in value)


def load_review(folder: Path) -> Review:
    """The review marks of a dataset folder; none when it has no review.json."""
    path = Path(folder) / REVIEW_FILE
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Review(path=path)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    shape = '{"drop_samples": [sample id, ...], "drop_memories": {sample id: [chunk id, ...]}}'
    if not isinstance(row, dict):
        raise UsageError(f"{path}: must be a JSON object {shape}")
    unknown = sorted(set(row) - {"drop_samples", "drop_memories"})
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r}; the shape is {shape}")
    samples, memories = row.get("drop_samples", []), row.get("drop_memories", {})
    if not _strings(samples):
        raise UsageError(f'{path}: "drop_samples" must be a list of sample ids')
    if not isinstance(memories, dict) or not all(_strings(c) for c in memories.values()):
        raise UsageError(f'{path}: "drop_memories" must map sample ids to lists of chunk ids')
    return Review(set(samples), {s: set(c) for s, c in memories.items() if c}, path)


def mark(folder: Path, sample: str, memory: str | None, drop: bool) -> Review:
    """Drop a sample, or one memory (chunk id) of it, or with drop=False keep it again;
    returns the review as written.

    The read-modify-write holds an exclusive flock on review.json.lock, so that threads and
    processes marking at once lose no mark; review.json itself is replaced atomically."""
    if not sample or memory == "":
        raise UsageError("a review mark needs a sample id, and a chunk id if it names a memory")
    folder = Path(folder)
    with locked(folder / REVIEW_FILE):
        review = load_review(folder)
        if memory is None:
            marks, item = review.samples, sample
        else:
            marks, item = review.memories.setdefault(sample, set()), memory
        if drop:
            marks.add(item)
        else:
            marks.discard(item)
        review.memories = {s: c for s, c in review.memories.items() if c}
        write_json(folder / REVIEW_FILE, review.to_row())
    return review


def _without(sample: Sample, chunk_ids: set[str]) -> Sample:
    """A copy of the sample whose memories `chunk_ids` are in neither of its slots."""
    memories = [
        dataclasses.replace(m, useful=False, useful_reason=DROPPED)
        if m.chunk_id in chunk_ids
        else m
        for m in sample.memories
    ]
    kept = [c for c in sample.kept if c not in chunk_ids]
    return dataclasses.replace(sample, memories=memories, kept=kept)


def apply_review(
    samples: list[Sample], review: Review, render: Callable[[list[Sample]], None]
) -> tuple[list[Sample], dict[str, Any]]:
    """The samples that stay training targets under the review, and what it dropped.

    A dropped memory leaves its sample's memory slot and, where that exchange is history in
    later samples of the interview, the history slot too: each interview so changed is
    rendered again by `render`, given all its samples (raft.ftgen.render_interviews, the one
    renderer). A dropped sample is no training target, but its exchange stays in the later
    samples' history: it is still the real conversation. The samples given are not changed;
    the ones the review changes are copies. Marks that match nothing are warned about and
    listed under "unknown", as "sample" or "sample/chunk".
    """
    by_id = {s.id: s for s in samples}
    unknown = sorted(s for s in review.samples if s not in by_id)
    dropped: dict[str, set[str]] = {}
    for sample_id, chunk_ids in sorted(review.memories.items()):
        have = {m.chunk_id for m in by_id[sample_id].memories} if sample_id in by_id else set()
        unknown += [f"{sample_id}/{c}" for c in sorted(chunk_ids - have)]
        if chunk_ids & have:
            dropped[sample_id] = chunk_ids & have
    changed = {by_id[s].interview for s in dropped}
    reviewed = [
        _without(s, dropped.get(s.id, set())) if s.interview in changed else s for s in samples
    ]
    if changed:
        render([s for s in reviewed if s.interview in changed])
    kept = [s for s in reviewed if s.id not in review.samples]
    if unknown:
        where = review.path or REVIEW_FILE
        warn(f"{where}: {len(unknown)} mark(s) match no sample or memory: {', '.join(unknown)}")
    counts = {
        "samples_dropped": len(samples) - len(kept),
        "memories_dropped": sum(len(c) for c in dropped.values()),
        "unknown": unknown,
    }
    return kept, counts
