"""A scored run as `ratf report` reads it: `summary.json` (with the human blind test's
judgements read afresh) and the per-item `scores.jsonl`; and how its systems and intervals
are named and written, the same in the Markdown, the plots and the terminal table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from raft.errors import RaftError, UsageError
from raft.files import read_jsonl
from ratf.human import human_file, read_judgements, summarize_human

CONTROL_ORDER = ("oracle", "shuffled", "other_voice")
CONTROL_LABELS = {"oracle": "oracle", "shuffled": "shuffled", "other_voice": "other voice"}


def load_summary(run_dir: Path) -> dict[str, Any]:
    """The run's `summary.json`; a missing or broken one is a one-line error."""
    path = run_dir / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} not found: run `ratf score` first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RaftError(f"cannot read {path}: {exc}") from None


def current_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary with the human blind test read afresh from its file, where
    judgements may have arrived since `ratf score`; without the file, as scored."""
    summary = load_summary(run_dir)
    path = human_file(run_dir)
    if path.is_file():
        summary["human"] = summarize_human(read_judgements(path))
    return summary


def load_scores(path: Path) -> dict[str, dict[str, list[float]]]:
    """Per-item values as metric → system → list, in file order; empty without the file."""
    scores: dict[str, dict[str, list[float]]] = {}
    if not path.is_file():
        return scores
    for row in read_jsonl(path):
        scores.setdefault(row["metric"], {}).setdefault(row["system"], []).append(
            float(row["value"])
        )
    return scores


def split_systems(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Replicas (in the run's order) and controls (oracle, shuffled, other voice)."""
    controls = set(summary.get("controls") or CONTROL_ORDER)
    systems = summary.get("systems") or []
    replicas = [s for s in systems if s not in controls]
    ordered = [c for c in CONTROL_ORDER if c in systems]
    return replicas, ordered + [s for s in systems if s in controls and s not in ordered]


def fmt_interval(cell: dict[str, float] | None, signed: bool = False) -> str:
    """`mean [low, high]` with 3 decimals; signed adds `+` to positive numbers."""
    if not cell:
        return "—"
    spec = "+.3f" if signed else ".3f"
    return f"{cell['mean']:{spec}} [{cell['low']:{spec}}, {cell['high']:{spec}}]"


def excludes(cell: dict[str, float], value: float) -> bool:
    """Whether the interval lies wholly above or below `value`."""
    return cell["low"] > value or cell["high"] < value


def label(system: str) -> str:
    """How a system is named to a reader."""
    return CONTROL_LABELS.get(system, system)


def unordered_metrics(summary: dict[str, Any]) -> list[str]:
    """Metrics whose controls are not ranked oracle > shuffled > other voice."""
    return [m for m, v in summary.get("metrics", {}).items() if v.get("controls_ordered") is False]


def scored_on(systems: dict[str, Any]) -> list[str]:
    """Where and in which dtype each replica was scored, one line per device and dtype
    (bf16 on a GPU moves bits/byte a little against float32 on a CPU)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for system, cell in systems.items():
        if cell.get("device"):
            groups.setdefault((cell["device"], cell["dtype"]), []).append(system)
    if len(groups) == 1:
        (device, dtype), _ = groups.popitem()
        return [f"bits/byte scored on {device}, {dtype}"]
    return [
        f"bits/byte scored on {device}, {dtype}: {', '.join(names)}"
        for (device, dtype), names in groups.items()
    ]


CEILING_NOTE = (
    "a ceiling (+oracle) is its replica's model shown the earlier sentences nearest the real "
    "answer instead of the recalled memories: it reads the answer, so no replica can have "
    "these memories at inference"
)


def ceilings(summary: dict[str, Any]) -> list[str]:
    """The likelihood's ceiling systems (`+oracle`), in order."""
    systems = (summary.get("likelihood") or {}).get("systems") or {}
    return [s for s, cell in systems.items() if cell.get("ceiling_of")]


def gap_closed_cells(summary: dict[str, Any]) -> list[str]:
    """Per memory replica, e.g. `base+mem 0.250 [0.100, 0.400] (base → base+oracle)`: the
    fraction of the oracle gap in bits/byte its memories close."""
    closed = (summary.get("likelihood") or {}).get("gap_closed") or {}
    return [
        f"{system} {fmt_interval(cell)} ({cell['none']} → {cell['oracle']})"
        for system, cell in closed.items()
    ]
