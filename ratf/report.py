"""`ratf report`: a scored run as Markdown with PNG plots (`ratf.plots`); its table on the
terminal is `ratf.terminal`'s.

Reads `summary.json` (means and bootstrap intervals, written by `ratf score`) and
`scores.jsonl` (one score per item, system and metric) from a run folder, and the human
blind test's judgements afresh from `ratf/human/RUN.jsonl`; writes `report.md` and
`plots/*.png` beside them. Every file is written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from raft.files import write_text
from ratf.human import ordered_systems
from ratf.plots import write_plots
from ratf.summary import (
    CEILING_NOTE,
    CONTROL_LABELS,
    CONTROL_ORDER,
    ceilings,
    current_summary,
    excludes,
    fmt_interval,
    gap_closed_cells,
    label,
    load_scores,
    scored_on,
    split_systems,
    unordered_metrics,
)

MARKUP = re.compile(r"([\\`*_\[\]<>!|#~&$])")  # backslash-escaped wherever they are
LINE_START = re.compile(r"^(\s*\d*)([-+=.)])")  # lists, setext underlines
BARE_LINK = re.compile(r"(?i):(?=//)|(?<=\bwww)\.")  # GitHub links these without <>
HOW_TO_READ = (
    "Every metric is oriented so that **higher is closer to the author**. Each cell is the "
    "mean over the interview's items with its **95% bootstrap interval** `mean [low, high]`. "
    "Paired differences subtract the baseline's score on the *same* item and resample items "
    "together, so they are tighter than comparing two overlapping intervals by eye; a "
    "difference whose interval excludes 0 is marked. The controls are not replicas: they "
    "show how far each metric can move on this very interview. Answer likelihood is the "
    "exception: it is in bits per byte, where **lower is closer** (see its section)."
)
LIKELIHOOD_TEXT = (
    "How probable each local replica finds the author's real answer, teacher-forced after "
    "exactly the prompt it was sent: the answer's negative log-likelihood in **bits per "
    "UTF-8 byte**, which compares models with different tokenizers. **Lower is closer here, "
    "unlike every metric above.** *Shuffled* scores the same prompt against the author's "
    "answer to a different question; the gap (shuffled − real) is above 0 when the model "
    "finds the real answer likelier because of the question, ✓ where its 95% interval "
    "excludes 0. Remote replicas give no log-probabilities of a given answer, so they are "
    "n/a."
)
HUMAN_TEXT = (
    "For each item a rater saw the question with the author's real answer and one reply of "
    "each replica, in random order, and picked the one they took for the author's. "
    "**Accuracy near chance means raters could not tell the author from the replicas.** A "
    "replica's rate is how often its reply was taken for the author's: a perfect replica "
    "would be taken for the author as often as the author is picked, an obvious one never."
)
CONTROLS_TEXT = (
    "Three controls are scored beside the replicas: **oracle** is {oracle}, **shuffled** is "
    "{shuffled}, and **other voice** is {other_voice}. A metric that can tell the author's "
    "answer from someone else's should rank them oracle > shuffled > other voice (a metric "
    "of the author's style in general, rather than of this answer, only needs oracle and "
    "shuffled both above the other voice, since the shuffled answer is the author too). "
    "Where a metric fails this, its differences between replicas say little."
)


def write_report(run_dir: Path, summary: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write `report.md` and `plots/*.png` for a scored run; names → written paths.
    `summary` defaults to `current_summary(run_dir)`."""
    run_dir = Path(run_dir)
    summary = current_summary(run_dir) if summary is None else summary
    scores = load_scores(run_dir / "scores.jsonl")
    paths = write_plots(summary, scores, run_dir / "plots")
    report = run_dir / "report.md"
    write_text(
        report, render_markdown(summary, {k: v.relative_to(run_dir) for k, v in paths.items()})
    )
    return {"report": report, **paths}


# -- Markdown ---------------------------------------------------------------------------


def render_markdown(summary: dict[str, Any], plots: dict[str, Path]) -> str:
    """The whole report as Markdown; `plots` are paths relative to the run folder."""
    sections = [
        header_section(summary),
        scores_section(summary),
        baseline_section(summary),
        controls_section(summary),
        likelihood_section(summary),
        judge_section(summary.get("judge")),
        human_section(summary),
        plots_section(summary, plots),
        examples_section(summary),
        "---\n\n_Written by `ratf report` from `summary.json` and `scores.jsonl` of run "
        f"`{summary.get('run', '?')}`"
        + (", with the judgements of its human blind test" if summary.get("human") else "")
        + "._",
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def header_section(summary: dict[str, Any]) -> str:
    """Title, what was run, and how to read the numbers."""
    target = summary.get("target") or summary.get("persona") or "?"
    lines = [
        f"# RATF report: {target} — run {summary.get('run', '?')}",
        "",
        f"Persona `{summary.get('persona', '?')}`, {summary.get('n_items', '?')} held-out "
        f"interview items, baseline **{summary.get('baseline') or 'none'}**.",
        "",
    ]
    specs = summary.get("replicas") or {}
    for name in split_systems(summary)[0]:
        spec = specs.get(name) or {}
        memories = {True: "with memories", False: "no memories"}.get(spec.get("memories"), "")
        detail = ", ".join(x for x in (f"`{spec.get('spec', '?')}`", memories) if x)
        lines.append(f"- **{name}**: {detail}")
    lines += ["", "## How to read this", "", HOW_TO_READ, ""]
    for metric, data in summary.get("metrics", {}).items():
        lines.append(f"- **{metric}**: {data.get('description', '')}")
    return "\n".join(lines)


def table(head: list[str], rows: Iterable[list[str]]) -> str:
    """A Markdown table; pipes inside cells are escaped."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def scores_section(summary: dict[str, Any]) -> str:
    """Systems as rows, metrics as columns: mean [low, high]."""
    metrics = summary.get("metrics", {})
    unordered = set(unordered_metrics(summary))
    head = ["system"] + [f"{m} ⚠" if m in unordered else m for m in metrics]
    replicas, controls = split_systems(summary)
    rows = [
        [f"**{s}**"] + [fmt_interval(metrics[m]["systems"].get(s)) for m in metrics]
        for s in replicas
    ]
    rows += [
        [f"_{label(s)}_ (control)"] + [fmt_interval(metrics[m]["systems"].get(s)) for m in metrics]
        for s in controls
    ]
    note = "⚠ marks a metric whose controls are out of order (see Controls)." if unordered else ""
    return "\n\n".join(x for x in ("## Scores", table(head, rows), note) if x)


def baseline_section(summary: dict[str, Any]) -> str:
    """Paired differences to the baseline, marking intervals that exclude 0."""
    metrics = summary.get("metrics", {})
    baseline = summary.get("baseline")
    others = [s for s in split_systems(summary)[0] if s != baseline]
    title = f"## Paired differences vs {baseline or 'baseline'}"
    if not baseline or not others:
        return f"{title}\n\nNo other replica to compare with a baseline in this run."
    rows = []
    for system in others:
        row = [f"**{system}** − {baseline}"]
        for metric in metrics:
            cell = metrics[metric].get("vs_baseline", {}).get(system)
            text = fmt_interval(cell, signed=True)
            if cell and excludes(cell, 0.0):
                text = f"**{text}** {'▲' if cell['low'] > 0 else '▼'}"
            row.append(text)
        rows.append(row)
    legend = (
        f"▲ better / ▼ worse than {baseline}: the 95% interval of the paired difference "
        "excludes 0. Unmarked differences are within what resampling the items explains."
    )
    return "\n\n".join([title, table(["replica"] + list(metrics), rows), legend])


def controls_section(summary: dict[str, Any]) -> str:
    """What the controls are and, per metric, whether it ranks them as it should."""
    notes = {**{c: CONTROL_LABELS[c] for c in CONTROL_ORDER}, **(summary.get("controls") or {})}
    parts = ["## Controls", CONTROLS_TEXT.format(**{c: notes.get(c, c) for c in CONTROL_ORDER})]
    rows, warnings = [], []
    for metric, data in summary.get("metrics", {}).items():
        means = [data["systems"].get(c, {}).get("mean") for c in CONTROL_ORDER]
        if None in means:
            continue
        ordered = data.get("controls_ordered")
        verdict = "✓ yes" if ordered else "⚠ no"
        rows.append([metric, *(f"{m:.3f}" for m in means), chain(means), verdict])
        if ordered is False:
            warnings.append(
                f"> ⚠ **{metric}** does not separate oracle > shuffled > other voice on this "
                f"interview ({chain(means)}); read it with care."
            )
    if rows:
        head = ["metric", "oracle", "shuffled", "other voice", "order seen", "separates?"]
        parts.append(table(head, rows))
    return "\n\n".join(parts + warnings)


def chain(means: list[float]) -> str:
    """The controls' means as an ordering, e.g. `oracle > shuffled ≤ other voice`."""
    names = [CONTROL_LABELS[c] for c in CONTROL_ORDER]
    text = names[0]
    for before, after, name in zip(means, means[1:], names[1:], strict=False):
        text += f" {'>' if before > after else '≤'} {name}"
    return text


def likelihood_section(summary: dict[str, Any]) -> str:
    """Bits/byte per replica, its shuffled control and gap, the difference to the baseline
    (lower is closer: ▲ marks a replica closer than the baseline), and why any is n/a."""
    data = summary.get("likelihood")
    if not data:
        return ""
    title = "## Answer likelihood (bits/byte, lower is closer)"
    if "skipped" in data:
        return f"{title}\n\nSkipped (`{data['skipped']}`)."
    systems = data.get("systems") or {}
    baseline = data.get("baseline")
    head = ["replica", "bits/byte ↓", "shuffled ↓", "gap (shuffled − real)"]
    head += [f"replica − {baseline}"] if baseline else []
    rows, missing = [], []
    names = [s for s in split_systems(summary)[0] if s in systems] + ceilings(summary)
    for system in names:
        cell = systems[system]
        name = f"**{system}** (ceiling)" if cell.get("ceiling_of") else f"**{system}**"
        if "n/a" in cell:
            rows.append([name] + ["n/a"] * (len(head) - 1))
            missing.append(f"- **{system}**: {cell['n/a']}")
            continue
        gap = fmt_interval(cell["gap"], signed=True) + (" ✓" if cell["gap"]["low"] > 0 else "")
        row = [name, fmt_interval(cell["bits_per_byte"]), fmt_interval(cell["shuffled"])]
        row.append(gap)
        if baseline:
            row.append(lower_is_better(cell.get("vs_baseline")) if system != baseline else "—")
        rows.append(row)
    parts = [title, LIKELIHOOD_TEXT, table(head, rows)]
    if baseline:
        parts.append(
            f"replica − {baseline}: the paired difference in bits/byte; ▲ closer / ▼ further than "
            f"{baseline} where its 95% interval excludes 0 (a negative difference is closer)."
        )
    if ceilings(summary):
        parts.append(CEILING_NOTE[0].upper() + CEILING_NOTE[1:] + ".")
    closed = gap_closed_cells(summary)
    if closed:
        parts.append(
            "Fraction of the oracle gap closed, (none − memories) / (none − ceiling) in "
            "bits/byte, with a paired 95% interval (1: as close as the ceiling, 0: no closer "
            "than no memories):\n\n" + "\n".join(f"- {line}" for line in closed)
        )
    parts += [line[0].upper() + line[1:] + "." for line in scored_on(systems)]
    if missing:
        parts.append("Not scored:\n\n" + "\n".join(missing))
    return "\n\n".join(parts)


def lower_is_better(cell: dict[str, float] | None) -> str:
    """A paired difference where below 0 is better, marked when it excludes 0."""
    text = fmt_interval(cell, signed=True)
    if cell and excludes(cell, 0.0):
        text = f"**{text}** {'▲' if cell['high'] < 0 else '▼'}"
    return text


def judge_section(judge: dict[str, Any] | None) -> str:
    """Pairwise win rates and the discrimination test, when the run was judged."""
    if not judge:
        return ""
    parts = [f"## LLM judge\n\nJudge: `{judge.get('judge', '?')}`."]
    pairwise = judge.get("pairwise") or {}
    if pairwise:
        rows = []
        for system, data in pairwise.items():
            cell = data["win_rate"]
            text = fmt_interval(cell)
            if excludes(cell, 0.5):
                text = f"**{text}** {'▲' if cell['low'] > 0.5 else '▼'}"
            rows.append([f"**{system}**", text])
        parts += [
            "Pairwise: how often the judge preferred the replica's reply over the "
            "baseline's as the author's (both orders asked; 0.5 is a tie; ▲/▼ when the "
            "interval excludes 0.5).",
            table(["replica", "win rate vs baseline"], rows),
        ]
    found = judge.get("discrimination")
    if found:
        cell, chance = found["picked_real"], found.get("chance")
        chance_text = f"{chance:.3f}" if chance is not None else "?"
        parts.append(
            "Discrimination: shown the real answer among the replicas' replies, the judge "
            f"picked the real one **{fmt_interval(cell)}** of the time; chance is "
            f"{chance_text}. The closer to chance, the better the replicas imitate the author."
        )
    return "\n\n".join(parts)


def human_section(summary: dict[str, Any]) -> str:
    """Raters' accuracy against chance and how often each replica was taken for the author,
    when people have taken the blind test of this run."""
    human = summary.get("human")
    if not human:
        return ""
    acc, chance = human["accuracy"], human["chance"]
    counts = (
        f"{human['judgements']} judgements by {human['raters']} raters on {human['items']} "
        "items (a rater's first judgement of an item counts)."
    )
    result = (
        f"Raters picked the author's answer **{acc['correct']} of {acc['n']}** times: "
        f"accuracy **{fmt_interval(acc)}** (95% Wilson interval) against chance "
        f"{chance:.3f}, p = {human['p_value']:.3g}: **{human['verdict']}**."
    )
    systems = human.get("systems") or {}
    rows = [
        [
            f"**{s}**",
            fmt_interval({"mean": systems[s]["rate"], **systems[s]}),
            f"{systems[s]['picked']} of {systems[s]['shown']}",
        ]
        for s in ordered_systems(human, split_systems(summary)[0])
    ]
    raters = ", ".join(
        f"{name} {data['correct']} of {data['judgements']}"
        for name, data in sorted(human.get("per_rater", {}).items())
    )
    parts = ["## Human blind test", HUMAN_TEXT, counts, result]
    if rows:
        parts.append(table(["replica", "taken for the author", "times"], rows))
    return "\n\n".join(parts + [f"Right per rater: {raters}."])


def plots_section(summary: dict[str, Any], plots: dict[str, Path]) -> str:
    """Embedded plots, linked relative to the report."""
    if not plots:
        return "## Plots\n\nNo per-item scores (`scores.jsonl`) to plot."
    lines = ["## Plots"]
    if "vs_baseline" in plots:
        lines.append(
            f"Paired differences vs {summary.get('baseline')}, mean and 95% interval:\n\n"
            f"![paired differences]({plots['vs_baseline'].as_posix()})"
        )
    for metric in summary.get("metrics", {}):
        if metric in plots:
            lines.append(f"### {metric}\n\n![{metric}]({plots[metric].as_posix()})")
    return "\n\n".join(lines)


def quote(text: str | None) -> str:
    """Text as a Markdown quote block, every line quoted and escaped."""
    if not text or not text.strip():
        return "> _(no reply)_"
    return "\n".join(f"> {escape(line)}".rstrip() for line in text.strip().splitlines())


def escape(line: str) -> str:
    """A line of a model's reply (or an answer) as literal text: no heading, list, link,
    image, table, HTML, code or math of its own, in CommonMark or on GitHub."""
    line = MARKUP.sub(r"\\\1", line)
    line = LINE_START.sub(r"\1\\\2", line)
    return BARE_LINK.sub(r"\\\g<0>", line)


def examples_section(summary: dict[str, Any]) -> str:
    """Question, real answer and each replica's reply, side by side."""
    examples = summary.get("examples") or []
    if not examples:
        return ""
    target = summary.get("target") or "the author"
    order = split_systems(summary)[0]
    parts = ["## Examples"]
    for number, example in enumerate(examples, 1):
        parts.append(f"### {number}. `{example.get('id', '?')}`")
        parts += ["**Question**", quote(example.get("question"))]
        parts += [f"**Real answer** ({target})", quote(example.get("answer"))]
        replies = example.get("replies") or {}
        shown = [s for s in order if s in replies] + [s for s in replies if s not in order]
        for system in shown:
            parts += [f"**{system}**", quote(replies[system])]
    return "\n\n".join(parts)
