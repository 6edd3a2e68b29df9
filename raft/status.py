"""`raft info`: what a persona folder holds, which backends it uses, what the cache saved."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from raft.config import ROLES, backend_spec, display_name, open_cache
from raft.files import count_lines
from raft.paths import Persona
from raft.training.registry import SUCCEEDED, load_records


def _describe(path: Path) -> str:
    if not path.exists():
        return "-"
    if path.is_dir():
        return f"{sum(1 for _ in path.glob('*.json'))} json files"
    if path.suffix == ".jsonl":
        return f"{count_lines(path)} rows"
    return f"{path.stat().st_size:,} bytes"


def print_status(persona: Persona) -> None:
    out = Console()
    table = Table(title=f"{display_name(persona)} ({persona.root})")
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
    records = load_records(persona)
    if records:
        done = [r for r in records if r.status == SUCCEEDED]
        newest = f", newest {done[-1].id} ({done[-1].venue})" if done else ""
        table.add_row("models", f"{len(records)} runs, {len(done)} succeeded{newest}")
    for role in ROLES:
        table.add_row(f"{role} backend", str(backend_spec(persona, role)))
    if persona.cache.exists():
        cache = open_cache(persona)
        table.add_row("cache", f"{cache.count('chat')} chat, {cache.count('embed')} embeddings")
    out.print(table)
