"""`ratf report`'s PNG plots: per metric, each system's per-item scores (a box with the
items as points, controls greyed), and one of the paired differences to the baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from raft.files import atomic_open
from ratf.summary import excludes, label, split_systems

REPLICA_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
CONTROL_COLOR = "#9a9a9a"


def write_plots(
    summary: dict[str, Any], scores: dict[str, dict[str, list[float]]], folder: Path
) -> dict[str, Path]:
    """One distribution plot per metric and one of paired differences; names → paths."""
    replicas, controls = split_systems(summary)
    paths = {}
    for metric, data in summary.get("metrics", {}).items():
        by_system = scores.get(metric, {})
        systems = [s for s in replicas + controls if by_system.get(s)]
        if systems:
            figure = distribution_figure(metric, data, by_system, systems, set(controls))
            paths[metric] = save_figure(figure, folder / f"{metric}.png")
    figure = baseline_figure(summary)
    if figure is not None:
        paths["vs_baseline"] = save_figure(figure, folder / "vs_baseline.png")
    return paths


def save_figure(figure: Any, path: Path) -> Path:
    """Render a figure to PNG atomically."""
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
    return path


def system_colors(systems: list[str], controls: set[str]) -> list[str]:
    """A distinct colour per replica, grey for every control."""
    colors, n = [], 0
    for system in systems:
        if system in controls:
            colors.append(CONTROL_COLOR)
        else:
            colors.append(REPLICA_COLORS[n % len(REPLICA_COLORS)])
            n += 1
    return colors


def distribution_figure(
    metric: str,
    data: dict[str, Any],
    by_system: dict[str, list[float]],
    systems: list[str],
    controls: set[str],
) -> Any:
    """Box plot plus jittered per-item points per system; controls greyed."""
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 1.1 * len(systems) + 2), 4.2))
    axes = figure.subplots()
    colors = system_colors(systems, controls)
    positions = np.arange(1, len(systems) + 1)
    boxes = axes.boxplot(
        [by_system[s] for s in systems],
        positions=positions,
        widths=0.55,
        patch_artist=True,
        showfliers=False,
        medianprops={"color": "black"},
    )
    for box, color, system in zip(boxes["boxes"], colors, systems, strict=True):
        box.set(facecolor=color, alpha=0.15 if system in controls else 0.3, edgecolor=color)
    rng = np.random.default_rng(0)
    for x, color, system in zip(positions, colors, systems, strict=True):
        values = np.asarray(by_system[system])
        jitter = rng.uniform(-0.18, 0.18, size=values.size)
        marker = "x" if system in controls else "o"
        axes.scatter(x + jitter, values, s=16, color=color, marker=marker, alpha=0.8, zorder=3)
        mean = data.get("systems", {}).get(system, {}).get("mean", float(values.mean()))
        axes.scatter([x], [mean], marker="D", s=40, color="black", zorder=4)
    n_replicas = sum(s not in controls for s in systems)
    if 0 < n_replicas < len(systems):
        axes.axvline(n_replicas + 0.5, color=CONTROL_COLOR, linestyle=":", linewidth=1)
    axes.set_xticks(positions, [tick(s, controls) for s in systems])
    for ticklabel, system in zip(axes.get_xticklabels(), systems, strict=True):
        if system in controls:
            ticklabel.set_color("#666666")
    warn = "" if data.get("controls_ordered", True) else "  ⚠ controls out of order"
    axes.set_title(f"{metric}{warn}\n{data.get('description', '')}", fontsize=10)
    axes.set_ylabel(f"{metric} per item (◆ mean)")
    axes.grid(axis="y", alpha=0.3)
    return figure


def tick(system: str, controls: set[str]) -> str:
    """An x-axis label; controls say they are controls."""
    return f"{label(system)}\n(control)" if system in controls else system


def baseline_figure(summary: dict[str, Any]) -> Any | None:
    """Paired differences to the baseline per replica, one panel per metric; None if none."""
    from matplotlib.figure import Figure

    metrics = {m: d.get("vs_baseline") or {} for m, d in summary.get("metrics", {}).items()}
    everyone = split_systems(summary)[0]
    replicas = [s for s in everyone if any(s in v for v in metrics.values())]
    metrics = {m: v for m, v in metrics.items() if v}
    if not replicas or not metrics:
        return None
    figure = Figure(figsize=(2.6 * len(metrics) + 1, 0.5 * len(replicas) + 1.8))
    panels = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    # The same colour per replica as in the distribution plots.
    colors = dict(zip(everyone, system_colors(everyone, set()), strict=True))
    ys = {s: n for n, s in enumerate(reversed(replicas))}
    for axes, (metric, cells) in zip(panels, metrics.items(), strict=True):
        axes.axvline(0, color="black", linewidth=1)
        for system, cell in cells.items():
            if system not in ys:
                continue
            error = [[cell["mean"] - cell["low"]], [cell["high"] - cell["mean"]]]
            filled = excludes(cell, 0.0)
            axes.errorbar(
                [cell["mean"]],
                [ys[system]],
                xerr=error,
                fmt="o",
                color=colors[system],
                markerfacecolor=colors[system] if filled else "white",
                capsize=4,
            )
        axes.set_title(metric, fontsize=10)
        axes.grid(axis="x", alpha=0.3)
    panels[0].set_yticks(list(ys.values()), list(ys))
    panels[0].set_ylim(-0.7, len(replicas) - 0.3)
    figure.suptitle(
        f"Paired difference vs {summary.get('baseline')} (95% bootstrap; filled: excludes 0)",
        fontsize=10,
    )
    return figure
