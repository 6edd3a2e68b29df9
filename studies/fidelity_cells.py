"""The fidelity page's cells and tables (studies.fidelity_page): per-item scores of a run
(metric -> system -> item id -> value) turned into means, paired differences and fractions
of the oracle gap, each with its 95% bootstrap interval."""

from __future__ import annotations

from ratf.stats import Interval, bootstrap_mean, gap_closed, paired_difference

BPB = "bits_per_byte"
CEILING = "ceiling: "
# What each row of the study is; `{oracle}` rows are the oracle-p LoRA's (see system_rows).
WHAT = {
    "base": "SmolLM2-135M-Instruct, no memories",
    "base+mem": "the same base model, memories in the prompt",
    "base+oracle": CEILING + "the base model shown the earlier sentences nearest the real answer",
    "plain": "LoRA on the plain dataset (same samples, no memories), no memories",
    "plain+mem": "the plain LoRA, memories in the prompt",
    "plain+oracle": CEILING + "the plain LoRA shown the sentences nearest the real answer",
    "raft-nomem": "LoRA on the RAFT dataset (memories interpolated), no memories",
    "raft": "the RAFT LoRA, memories in the prompt (the replica RAFT ships)",
    "raft+oracle": CEILING + "the RAFT LoRA shown the sentences nearest the real answer",
    "{oracle}-nomem": "LoRA on `ft:gen --oracle-p {p}` (oracle memories with chance {p}), none",
    "{oracle}": "that LoRA, memories in the prompt (retrieved by the question, as shipped)",
    "{oracle}+oracle": CEILING + "that LoRA shown the sentences nearest the real answer",
}
# The contrasts the study is for, each read as "first minus second" (negative: first closer).
CONTRASTS = [
    ("raft", "plain+mem", "training with memories vs plain training, both shown memories"),
    ("raft", "plain", "the RAFT replica vs a plain fine-tune used as it was trained"),
    ("raft", "raft-nomem", "memories at inference, for the RAFT-trained model"),
    ("plain+mem", "plain", "memories at inference, for the plain model"),
    ("base+mem", "base", "memories at inference, for the untrained model"),
    ("plain", "base", "plain fine-tuning"),
    ("raft", "base", "the whole of RAFT"),
    ("base+oracle", "base", "ceiling: the answer's nearest sentences, untrained model"),
    ("raft+oracle", "raft-nomem", "ceiling: the answer's nearest sentences, RAFT model"),
]
# Whose oracle gap: (the memory replica, the same model without memories, its ceiling).
GAPS = [
    ("base+mem", "base", "base+oracle"),
    ("plain+mem", "plain", "plain+oracle"),
    ("raft", "raft-nomem", "raft+oracle"),
]


def system_rows(oracle: str | None) -> list[str]:
    """The systems in the page's order, the oracle-p LoRA's three last."""
    rows = [s for s in WHAT if "{oracle}" not in s]
    return rows + (
        [s.replace("{oracle}", oracle) for s in WHAT if "{oracle}" in s] if oracle else []
    )


def describe(system: str, oracle: str | None, p: float | None) -> str:
    key = system.replace(oracle, "{oracle}") if oracle else system
    return WHAT.get(key, "").replace("{p}", f"{p:g}" if p is not None else "")


def values(scores: dict, metric: str, system: str) -> list[float]:
    by_id = scores.get(metric, {}).get(system, {})
    return [by_id[i] for i in sorted(by_id)]


def fmt(cell: Interval | None, signed: bool = False) -> str:
    if cell is None:
        return "n/a"
    spec = "+.3f" if signed else ".3f"
    return f"{cell.mean:{spec}} [{cell.low:{spec}}, {cell.high:{spec}}]"


def pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def mean_cell(scores: dict, metric: str, system: str) -> Interval | None:
    data = values(scores, metric, system)
    return bootstrap_mean(data) if data else None


def difference(scores: dict, metric: str, a: str, b: str) -> Interval | None:
    first, second = values(scores, metric, a), values(scores, metric, b)
    if not first or len(first) != len(second):
        return None
    return paired_difference(first, second)


def gap(scores: dict, retrieved: str, none: str, oracle: str) -> Interval | None:
    """The fraction of the oracle gap `retrieved` closes, (none − retrieved) / (none −
    oracle) in bits/byte, paired over items (ratf.stats.gap_closed); None when not scored
    or when the ceiling gains nothing."""
    rows = [values(scores, BPB, s) for s in (none, retrieved, oracle)]
    if not rows[0] or any(len(r) != len(rows[0]) for r in rows):
        return None
    return gap_closed(*rows)


def verdict(cell: Interval | None) -> str:
    if cell is None:
        return "not measured"
    if cell.high < 0:
        return "**lower** (closer), excludes 0"
    if cell.low > 0:
        return "**higher** (further), excludes 0"
    return "no difference shown (interval spans 0)"


def short_verdict(cell: Interval | None) -> str:
    if cell is None:
        return "not measured"
    if cell.high < 0:
        return f"**{fmt(cell, signed=True)}** (lower, excludes 0)"
    if cell.low > 0:
        return f"**{fmt(cell, signed=True)}** (higher, excludes 0)"
    return f"{fmt(cell, signed=True)} (spans 0)"


def likelihood_table(
    scores: dict, systems: list[str], oracle: str | None, p: float | None
) -> list[str]:
    lines = [
        "| system | what it is | bits/byte of the real answer ↓ | of a shuffled answer | "
        "gap (shuffled − real) | ROUGE-L ↑ | chrF ↑ | semantic ↑ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system in systems:
        shuffled, real = (
            values(scores, "bits_per_byte_shuffled", system),
            values(scores, BPB, system),
        )
        gap_cell = (
            paired_difference(shuffled, real) if shuffled and len(shuffled) == len(real) else None
        )
        name = f"`{system}` (ceiling)" if system.endswith("+oracle") else f"`{system}`"
        lines.append(
            f"| {name} | {describe(system, oracle, p)} "
            f"| {fmt(mean_cell(scores, BPB, system))} "
            f"| {fmt(mean_cell(scores, 'bits_per_byte_shuffled', system))} "
            f"| {fmt(gap_cell, signed=True)} "
            f"| {fmt(mean_cell(scores, 'rouge_l', system))} "
            f"| {fmt(mean_cell(scores, 'chrf', system))} "
            f"| {fmt(mean_cell(scores, 'semantic', system))} |"
        )
    return lines


def contrasts_table(
    contrasts: list[tuple[str, str, str]], by_persona: dict[str, dict]
) -> list[str]:
    """One row per contrast, one Δ bits/byte column per persona (paired, 95% CI)."""
    names = list(by_persona)
    lines = [
        "| contrast | what it isolates | " + " | ".join(f"{n}: Δ bits/byte" for n in names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for a, b, what in contrasts:
        cells = [short_verdict(difference(by_persona[n], BPB, a, b)) for n in names]
        lines.append(f"| `{a}` − `{b}` | {what} | " + " | ".join(cells) + " |")
    return lines


def gaps_table(gaps: list[tuple[str, str, str]], by_persona: dict[str, dict]) -> list[str]:
    names = list(by_persona)
    lines = [
        "| memories of | none → ceiling | " + " | ".join(f"{n}: gap closed" for n in names) + " |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " |",
    ]
    for retrieved, none, oracle in gaps:
        cells = [fmt(gap(by_persona[n], retrieved, none, oracle)) for n in names]
        lines.append(f"| `{retrieved}` | `{none}` → `{oracle}` | " + " | ".join(cells) + " |")
    return lines


def quality_lines(runs: dict[str, dict]) -> list[str]:
    lines = [
        "| persona | memory style | memories retrieved | recall@k of the source essays | "
        "judged useful (pass 1) | judge precision | judge recall | dropped by the gate | "
        "base+mem − base, bits/byte |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run in runs.items():
        for r in run["rounds"]:
            quality = r["stats"].get("quality") or {}
            memories = r["stats"]["memories"]
            gate = quality.get("gated") or {}
            scores = r.get("scores") or run["final"]["scores"]
            effect = difference(scores, BPB, "base+mem", "base")
            lines.append(
                f"| {name} | {r['style']} | {memories['retrieved']} "
                f"| {pct(quality.get('recall_at_k'))} "
                f"| {memories['useful_by_question']} of {memories['retrieved']} "
                f"| {pct(quality.get('judge_precision'))} | {pct(quality.get('judge_recall'))} "
                f"| {', '.join(f'{n} {reason}' for reason, n in gate.items()) or 'none'} "
                f"| {fmt(effect, signed=True)} |"
            )
    return lines
