"""`ratf run`: every replica's reply to every benchmark item, through the call cache.

A replica is a model (registry id or backend spec) with memories on or off. Its prompts are
rendered from the items (history, memories, question) by the function that rendered the
training samples, under the token budgets the model was trained with.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.backends.spec import redact
from raft.concurrency import bounded_map
from raft.console import Tally, warn
from raft.conversation import NO_MEMORIES, Budget, ConversationSpec
from raft.errors import UsageError
from raft.files import read_jsonl, write_json, write_jsonl
from raft.paths import Persona, ft_gen_command
from raft.replica import OPENAI_API, choose_model, model_budgets
from raft.training.registry import SUCCEEDED, ModelRecord, load_records
from raft.workspace import Workspace
from ratf.items import BenchItem, items_path, load_items

if TYPE_CHECKING:
    from rich.progress import Progress

LABEL = re.compile(r"^[A-Za-z0-9_.+-]{1,40}$")
RUN_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}$")  # a folder name, never "." or ".."
CONTROLS = ("oracle", "shuffled", "other_voice")


@dataclass(frozen=True)
class ReplicaSpec:
    label: str
    model: str  # registry id or backend spec
    memories: bool


@dataclass(frozen=True)
class RunSettings:
    max_tokens: int = 256
    temperature: float = 0.0  # greedy: a benchmark run must be repeatable
    seed: int = 0


def parse_replica(text: str) -> ReplicaSpec:
    """`LABEL=SPEC[,memories=on|off]`, memories on by default."""
    label, _, rest = text.partition("=")
    model, _, option = rest.partition(",memories=")
    if not LABEL.match(label) or not model or option not in ("", "on", "off"):
        raise UsageError(
            f"bad --replica {text!r}: use LABEL=SPEC[,memories=on|off], e.g. raft=sft-2026...,"
            "memories=on or base=local,memories=off"
        )
    if label in CONTROLS:
        raise UsageError(f"--replica label {label!r} is reserved for a control")
    return ReplicaSpec(label, model, option != "off")


def base_spec(persona: Persona, record: Any) -> str | None:
    """The backend spec of the model a registry record was fine-tuned from."""
    if record.venue == "openai":
        url = record.params.get("api_base", "")
        return f"openai:{record.base_model}" + ("" if url.startswith(OPENAI_API) else f"@{url}")
    return "local" if record.base_model == "local" else None


# The six-way ablation, README "Benchmark": which model, and whether its prompt shows
# memories. `plain` is fine-tuned on the same samples without memories, so `raft` against
# `plain+mem` isolates what training with interpolated memories adds.
SYSTEMS = {
    "base": ("base", False),
    "base+mem": ("base", True),
    "plain": ("plain", False),
    "plain+mem": ("plain", True),
    "raft-nomem": ("raft", False),
    "raft": ("raft", True),
}


def default_replicas(persona: Persona) -> list[ReplicaSpec]:
    """The six-way ablation, each model without and with memories; a model not trained yet
    is skipped with a line saying which commands make it."""
    done = [r for r in load_records(persona) if r.status == SUCCEEDED and r.method == "sft"]
    tuned = {dataset: [r for r in done if r.dataset == dataset] for dataset in ("raft", "plain")}
    newest = {dataset: records[-1] for dataset, records in tuned.items() if records}
    trained = newest.get("raft") or newest.get("plain")
    if trained is not None:
        base = base_spec(persona, trained) or "local"
    else:
        base = str(Workspace.open(persona).spec("generator"))
    models = {"base": base} | {dataset: record.id for dataset, record in newest.items()}
    for dataset in ("plain", "raft"):
        if dataset not in models:
            labels = [label for label, (model, _) in SYSTEMS.items() if model == dataset]
            warn(
                f"skipping {', '.join(labels)}: no model trained on the {dataset} dataset yet; "
                f"make one with `{ft_gen_command(persona, dataset)}` and `raft ft:run "
                f"{persona.name}{' --dataset plain' if dataset == 'plain' else ''}`"
            )
    return [
        ReplicaSpec(label, models[model], memories)
        for label, (model, memories) in SYSTEMS.items()
        if model in models
    ]


def replica_budgets(
    persona: Persona, items: list[BenchItem], record: ModelRecord | None
) -> list[Budget]:
    """The budgets a model was trained with, on top of the items' own; a model trained on
    another conversation spec than the items' is named, since its prompts may differ."""
    spec = items[0].spec if items else None
    if spec is None:
        return []
    if record is not None and record.spec:
        trained = ConversationSpec.from_row(record.spec)
        if trained.memory_style == NO_MEMORIES:  # the plain dataset: no memories by design
            trained = replace(trained, memory_style=spec.memory_style)
        if trained != spec:
            warn(
                f"{record.id} was trained on data made with another conversation spec than "
                f"the benchmark items ({'; '.join(trained.differences(spec))})"
            )
    return model_budgets(persona, spec, record)


def run_replicas(
    persona: Persona,
    specs: list[ReplicaSpec],
    settings: RunSettings,
    progress: Progress | None = None,
) -> Path:
    """Generate all replies; returns the run folder (replies.jsonl, run.json)."""
    items = load_items(persona)
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise UsageError(f"replica labels must differ: {', '.join(labels)}")
    replies, models = [], {}
    ws = Workspace.open(persona)
    for spec in specs:
        llm, label, record = choose_model(ws, spec.model)
        models[spec.label] = llm.model_id
        budgets = replica_budgets(persona, items, record)
        requests = [
            {"messages": item.prompt(budgets, spec.memories), **asdict(settings)} for item in items
        ]
        tally = Tally(progress, f"replies: {spec.label}", len(items))
        # As many calls at once as the backend takes; every call is cached, so a re-run
        # after an interruption only makes the calls that were missing.
        texts = bounded_map(
            lambda request, llm=llm: llm.complete(**request).strip(),
            requests,
            llm.concurrency,
            lambda _, tally=tally: tally.advance(),
        )
        replies += [
            {"id": item.id, "system": spec.label, "reply": text}
            for item, text in zip(items, texts, strict=True)
        ]
    folder = new_run_folder(persona)  # only now, so an interrupted run leaves no folder
    write_jsonl(folder / "replies.jsonl", replies)
    write_json(
        folder / "run.json",
        {
            "run": folder.name,
            "replicas": {s.label: {"spec": redact(s.model), "memories": s.memories} for s in specs},
            "models": models,
            "settings": asdict(settings),
            "items": str(items_path(persona).relative_to(persona.root)),
            "n_items": len(items),
        },
    )
    return folder


def latest_run(persona: Persona, run: str | None = None, marker: str = "run.json") -> Path:
    """The named run, else the newest with `marker` (run.json: replied; summary.json: scored)."""
    runs = persona.ratf / "runs"
    first = "ratf run" if marker == "run.json" else "ratf score"
    if run is not None:
        check_run_name(run, runs)
        if not (runs / run / marker).is_file():
            raise UsageError(f"no {marker} for run {run!r} in {runs}: run `{first}` first")
        return runs / run
    done = sorted(p.parent for p in runs.glob(f"*/{marker}")) if runs.is_dir() else []
    if not done:
        raise UsageError(f"no {marker} in {runs}: run `{first} {persona.name}` first")
    return done[-1]


def check_run_name(run: str, runs: Path) -> str:
    """A run is named by its folder in `runs`, never by a path that could lead elsewhere."""
    if not RUN_NAME.match(run):
        raise UsageError(
            f"--run {run!r} is not the name of a run: give the name of a folder in {runs} "
            "(no path, no '..')"
        )
    return run


def new_run_folder(persona: Persona, prefix: str = "") -> Path:
    """A fresh run folder named by time (sortable, so the newest is the latest)."""
    base = persona.ratf / "runs" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder, n = Path(f"{base}{prefix}"), 1
    while folder.exists():
        n += 1
        folder = Path(f"{base}.{n}{prefix}")
    folder.mkdir(parents=True)
    return folder


def read_replies(folder: Path) -> dict[str, dict[str, str]]:
    """system -> item id -> reply."""
    out: dict[str, dict[str, str]] = {}
    for row in read_jsonl(folder / "replies.jsonl"):
        out.setdefault(row["system"], {})[row["id"]] = row["reply"]
    return out
