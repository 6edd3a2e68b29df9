"""The persona's model registry, `models/registry.json`: every training attempt, kept.

One record per run, local or OpenAI, successful or not, so a user can tell which data and
base model made a replica, and `chat`, `export` and `ratf` can find it by id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raft import distributed
from raft.errors import UsageError
from raft.files import write_json
from raft.paths import Persona

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"
# A record of this method is an embedder (`raft embed:train`), never a chat model: whatever
# picks a model to chat with, serve, export or score passes it over (`is_chat_model`).
RETRIEVER = "retriever"


@dataclass
class ModelRecord:
    id: str  # run id, e.g. "sft-20261122-064501" or "openai-ftjob-abc123"
    venue: str  # "local" | "openai"
    method: str  # "sft" | "dpo" | "retriever"
    base_model: str
    status: str = RUNNING
    created: str = field(default_factory=lambda: now())
    finished: str = ""
    model: str = ""  # the OpenAI fine-tuned model id, or the adapter folder (persona-relative)
    job_id: str = ""
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> path, sha256, ...
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    exports: dict[str, str] = field(default_factory=dict)  # "gguf", "modelfile" -> path
    spec: dict[str, Any] = field(default_factory=dict)  # the training data's conversation spec
    budget: dict[str, Any] = field(default_factory=dict)  # limit, reserve, tokenizer (local)
    dataset: str = "raft"  # trained on the RAFT dataset, or the plain one (no memories)
    # Local runs: device, dtype, world size, tokens/s, padding, peak memory, MFU, batching
    # and activation checkpointing (see raft.training.cost).
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def is_chat_model(self) -> bool:
        return self.method != RETRIEVER


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_id(method: str) -> str:
    """A sortable, readable id for a local run."""
    return f"{method}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registry_path(persona: Persona) -> Path:
    return persona.models / "registry.json"


def load_records(persona: Persona) -> list[ModelRecord]:
    """All records, oldest first; an unreadable registry is an error, never rewritten."""
    path = registry_path(persona)
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["models"]
        names = {f.name for f in dataclasses.fields(ModelRecord)}
        return [ModelRecord(**{k: v for k, v in row.items() if k in names}) for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a model registry ({exc}); fix or move it") from None


def save_record(persona: Persona, record: ModelRecord) -> None:
    """Insert or replace the record with this id (atomic rewrite of the registry). Under
    `accelerate launch` only the main process writes: the others hold the same record."""
    if not distributed.is_main():
        return
    records = [r for r in load_records(persona) if r.id != record.id]
    records.append(record)
    records.sort(key=lambda r: r.created)
    write_json(registry_path(persona), {"models": [dataclasses.asdict(r) for r in records]})


def find_record(persona: Persona, run: str | None = None, venue: str | None = None) -> ModelRecord:
    """The record named `run`, else the newest successful one (of `venue`, when given)."""
    records = load_records(persona)
    if run:
        for record in records:
            if record.id == run and not record.is_chat_model:
                raise UsageError(f"{run} is a retriever (raft embed:train), not a chat model")
            if record.id == run:
                return record
        known = ", ".join(r.id for r in records) or "none yet"
        raise UsageError(f"no model {run!r} in {registry_path(persona)} (known: {known})")
    done = [
        r for r in records if r.status == SUCCEEDED and r.is_chat_model and venue in (None, r.venue)
    ]
    if not done:
        raise UsageError(
            f"no trained {venue + ' ' if venue else ''}model for {persona.name!r} yet: "
            f"run `raft ft:run {persona.name}` first"
        )
    return done[-1]


def newest_retriever(persona: Persona) -> ModelRecord | None:
    """The persona's newest retriever that finished training, if any."""
    done = [r for r in load_records(persona) if r.method == RETRIEVER and r.status == SUCCEEDED]
    return done[-1] if done else None


def print_records(persona: Persona) -> None:
    """`raft models`: one line per run, oldest first, whole ids so the output pipes well;
    under a local run's line, indented, what it cost."""
    import click

    from raft.training.cost import describe

    records = load_records(persona)
    if not records:
        click.echo(f"no trained models for {persona.name!r} yet (raft ft:run {persona.name})")
    for r in records:
        loss = r.metrics.get("eval_loss", r.metrics.get("train_loss"))
        fields = [
            r.id,
            f"{r.venue}/{r.method}",
            r.status,
            r.model or "-",
            f"base={r.base_model}",
            f"loss={loss:.3f}" if isinstance(loss, float) else "",
            f"error={r.error}" if r.error else "",
        ]
        click.echo("  ".join(field for field in fields if field))
        if r.cost:
            click.echo(f"    {describe(r.cost)}")
