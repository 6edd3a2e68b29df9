"""The `Memory` record: one retrieved passage and what recall made of it (`raft.memories`),
as the memory slot shows it (`raft.conversation`) and a dataset stores it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raft.store import Hit


@dataclass
class Memory:
    chunk_id: str
    doc_id: str
    title: str
    link: str
    date: str
    text: str
    distance: float
    kind: str = "chunk"
    rephrased: str = ""
    useful: bool | None = None  # pass 1: judged from the question alone
    useful_reason: str = ""
    consistent: bool | None = None  # pass 2: judged against the real answer (training only)
    consistent_reason: str = ""
    error: str = ""  # why a step produced nothing usable
    gate: str = ""  # why the cheap gate dropped the rephrasing before any judge (memories.GATES)
    alone: bool = False  # judged on its own: its verdict in a batch was missing or malformed
    oracle: bool = False  # nearest the real answer (raft.oracle): training and ceilings only

    @classmethod
    def from_hit(cls, hit: Hit) -> Memory:
        return cls(
            hit.id, hit.doc_id, hit.title, hit.link, hit.date, hit.text, hit.distance, hit.kind
        )

    def row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Memory:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})
