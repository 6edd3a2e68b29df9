"""`raft info`: what a persona folder holds, which backends it uses, what the cache saved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from raft.backends.spec import ROLES
from raft.files import count_lines
from raft.paths import Persona
from raft.training.registry import SUCCEEDED, load_records
from raft.workspace import Workspace


def _describe(path: Path) -> str:
    if not path.exists():
        return "-"
    if path.is_dir():
        return f"{sum(1 for _ in path.glob('*.json'))} json files"
    if path.suffix == ".jsonl":
        return f"{count_lines(path)} rows"
    return f"{path.stat().st_size:,} bytes"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _clip(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quality_rows(quality: dict[str, Any] | None) -> list[tuple[str, str]]:
    """`raft info` rows for stats.json's "quality" (`raft.memory_quality`), if present."""
    if not quality:
        return []
    rows: list[tuple[str, str]] = []
    k = quality.get("k", "?")
    if quality.get("exchanges_with_sources"):
        rows.append(
            (
                "retrieval",
                f"recall@{k} {_share(quality.get('recall_at_k'))}: "
                f"{quality.get('sources_found', 0)} of {quality.get('sources', 0)} source "
                f"essays found, over {quality['exchanges_with_sources']} exchanges with sources",
            )
        )
        rows.append(
            (
                "judge (pass 1)",
                f"precision {_share(quality.get('judge_precision'))}, recall "
                f"{_share(quality.get('judge_recall'))}: judged useful "
                f"{quality.get('useful', 0)} of {quality.get('retrieved', 0)} retrieved "
                f"({quality.get('judged', 0)} judged, {quality.get('relevant', 0)} from a "
                "source essay)",
            )
        )
    else:
        rows.append(("retrieval", "not measured: no transcript names its sources"))
    gated = quality.get("gated") or {}
    total = quality.get("memories", 0)
    counts = ", ".join(f"{reason} {n}" for reason, n in gated.items()) or "none"
    rows.append(("gate", f"dropped {sum(gated.values())} of {total} memories: {counts}"))
    for reason, examples in (quality.get("examples") or {}).items():
        if examples:
            rows.append((f"gate {reason}", f"e.g. {_clip(examples[0])!r}"))
    return rows


def print_status(persona: Persona) -> None:
    out = Console()
    ws = Workspace.open(persona)
    table = Table(title=f"{ws.display_name} ({persona.root})")
    table.add_column("what")
    table.add_column("state")
    for label, path in [
        ("persona.toml", persona.config),
        ("corpus", persona.corpus),
        ("chunks", persona.chunks),
        ("transcripts", persona.transcripts),
        ("benchmark", persona.benchmark),
    ]:
        table.add_row(label, _describe(path))
    stats = persona.finetune / "stats.json"
    if stats.is_file():
        data = json.loads(stats.read_text(encoding="utf-8"))
        table.add_row(
            "finetune",
            f"{data['samples']} samples ({data['real_samples']} real, "
            f"{data['synthetic_samples']} synthetic), {data['memories']['kept']} memories kept",
        )
        if spec := data.get("spec"):
            table.add_row(
                "conversation spec",
                f"target {spec['target']!r}, generator {spec['generator']}, k {spec['k']}, "
                f"context {'on' if spec['context'] else 'off'}, {spec['memory_style']} "
                f"memories, {spec['max_tokens']} tokens ({spec['reserve']} for the answer)",
            )
        for label, value in quality_rows(data.get("quality")):
            table.add_row(label, value)
    records = load_records(persona)
    if records:
        done = [r for r in records if r.status == SUCCEEDED and r.is_chat_model]
        newest = f", newest {done[-1].id} ({done[-1].venue})" if done else ""
        table.add_row("models", f"{len(records)} runs, {len(done)} succeeded{newest}")
    for role in ROLES:
        table.add_row(f"{role} backend", str(ws.spec(role)))
    if persona.cache.exists():
        cache = ws.cache
        table.add_row("cache", f"{cache.count('chat')} chat, {cache.count('embed')} embeddings")
    out.print(table)
