"""A scored run's table on the terminal (`ratf score`, `ratf report`): systems × metrics,
replicas first and controls dimmed, bits/byte beside them, and below it the likelihood gaps,
the metrics whose controls are out of order and the human blind test.
"""

from __future__ import annotations

from typing import Any

from ratf.human import human_line, systems_line
from ratf.summary import (
    CEILING_NOTE,
    ceilings,
    fmt_interval,
    gap_closed_cells,
    label,
    scored_on,
    split_systems,
    unordered_metrics,
)


def likelihood_column(
    summary: dict[str, Any], replicas: list[str], controls: list[str]
) -> list[str] | None:
    """The terminal table's bits/byte cells (replicas, then controls), or None when the
    run has no likelihood to show."""
    systems = (summary.get("likelihood") or {}).get("systems")
    if systems is None:
        return None
    cells = []
    for system in replicas:
        cell = systems.get(system)
        cells.append("n/a" if not cell or "n/a" in cell else fmt_interval(cell["bits_per_byte"]))
    return cells + ["—"] * len(controls)


def likelihood_lines(summary: dict[str, Any]) -> list[str]:
    """Below the table: the real-vs-shuffled gap per replica, why any replica is n/a, or
    that likelihood was skipped."""
    data = summary.get("likelihood")
    if not data:
        return []
    if "skipped" in data:
        return [f"answer likelihood: skipped ({data['skipped']})"]
    gaps, lines = [], []
    for system, cell in (data.get("systems") or {}).items():
        if "n/a" in cell:
            lines.append(f"bits/byte n/a for {system}: {cell['n/a']}")
        else:
            mark = " ✓" if cell["gap"]["low"] > 0 else ""
            gaps.append(f"{system} {fmt_interval(cell['gap'], signed=True)}{mark}")
    if gaps:
        lines.insert(
            0,
            "bits/byte gap, shuffled − real (above 0: the model conditions on the "
            "question): " + ", ".join(gaps),
        )
    if ceilings(summary):
        lines.append(CEILING_NOTE[0].upper() + CEILING_NOTE[1:])
    closed = gap_closed_cells(summary)
    if closed:
        lines.append(
            "fraction of the oracle gap closed, (none − memories) / (none − ceiling) in "
            "bits/byte: " + ", ".join(closed)
        )
    return lines + scored_on(data.get("systems") or {})


def print_table(summary: dict[str, Any]) -> None:
    """Print the systems × metrics table to stdout, replicas first, controls dimmed."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    metrics = summary.get("metrics", {})
    replicas, controls = split_systems(summary)
    unordered = set(unordered_metrics(summary))
    heads = [f"{m} ⚠" if m in unordered else m for m in metrics]
    rows = [[s] + [fmt_interval(metrics[m]["systems"].get(s)) for m in metrics] for s in replicas]
    ceiling = ceilings(summary)  # likelihood only: every other metric is n/a
    rows += [[f"{s} (ceiling)"] + ["n/a"] * len(metrics) for s in ceiling]
    rows += [
        [f"{label(s)} (control)"] + [fmt_interval(metrics[m]["systems"].get(s)) for m in metrics]
        for s in controls
    ]
    caption = "mean [95% bootstrap interval]; higher is closer"
    likelihood = likelihood_column(summary, replicas + ceiling, controls)
    if likelihood is not None:
        heads.append("bits/byte ↓")
        rows = [row + [cell] for row, cell in zip(rows, likelihood, strict=True)]
        caption += ", except bits/byte ↓ (lower is closer)"
    title = f"{summary.get('target', '?')} — run {summary.get('run', '?')}"
    table = Table(title=title, caption=caption)
    for n, head in enumerate(["system", *heads]):
        table.add_column(Text(head), no_wrap=True, justify="left" if n == 0 else "right")
    shown = len(replicas) + len(ceiling)
    for n, row in enumerate(rows):
        table.add_row(
            *(Text(c) for c in row),
            style="dim" if n >= shown else None,
            end_section=n in (len(replicas) - 1, shown - 1),
        )
    widths = [max(len(r[i]) for r in [["system", *heads], *rows]) for i in range(len(heads) + 1)]
    needed = sum(widths) + 3 * len(widths) + 1
    console = Console(width=max(100, needed, len(title)), highlight=False)
    console.print(table)
    for metric in unordered:
        console.print(
            Text(
                f"⚠ {metric}: controls not ordered oracle > shuffled > other voice; "
                "read it with care"
            )
        )
    for line in likelihood_lines(summary):
        console.print(Text(line))
    human = summary.get("human")
    if human:
        for line in (human_line(human), systems_line(human, replicas)):
            console.print(Text(line), soft_wrap=True)
