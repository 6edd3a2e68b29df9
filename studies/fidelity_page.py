"""The fidelity study's page, `docs/fidelity.md` (studies.fidelity), from the run's results
(study.json): per persona the systems with their ceilings, the paired contrasts, the
fraction of the oracle gap closed, the oracle-p round, the goals of issue 29, the memory
styles, the judge against a similarity floor, and the commands with their time."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ratf.stats import Interval
from studies.fidelity_cells import (
    BPB,
    CONTRASTS,
    GAPS,
    contrasts_table,
    difference,
    fmt,
    gap,
    gaps_table,
    likelihood_table,
    mean_cell,
    quality_lines,
    short_verdict,
    system_rows,
    values,
)
from studies.fidelity_runs import REPO

DOC = REPO / "docs" / "fidelity.md"
PERSONA_TEXT = {
    "sample": "**flattering**: the fictional essayist Hollis Penwarden (35 essays, 4 training "
    "interviews), whose answers quote the essays",
    "ines": "**realistic**: the fictional harbour pilot Ines Calloway (10 essays, 2 training "
    "interviews), whose answers say the essays' ideas in new words, as real people do",
}
THIRD = 1 / 3


def goal_lines(runs: dict[str, dict]) -> list[str]:
    """Issue 29's goals, each met or missed by how much, from the numbers."""

    def scores(name: str) -> dict | None:
        return runs[name]["final"]["scores"] if name in runs else None

    rows = []
    sample, ines = scores("sample"), scores("ines")
    cell = difference(sample, BPB, "base+mem", "base") if sample else None
    rows.append(
        ("sample", "`base+mem` − `base` ≤ −0.050, interval excluding 0", cell, mem_goal(cell))
    )
    cell = difference(sample, BPB, "raft", "plain") if sample else None
    rows.append(
        ("sample", "`raft` − `plain` < 0, interval excluding 0", cell, below_zero_goal(cell))
    )
    cell = gap(sample, "raft", "raft-nomem", "raft+oracle") if sample else None
    rows.append(("sample", "≥ 1/3 of the oracle gap closed by `raft`", cell, third_goal(cell)))
    cell = difference(ines, BPB, "raft", "plain") if ines else None
    rows.append(("ines", "`raft` − `plain` not worse than +0.010", cell, ines_goal(cell)))
    lines = [
        "| persona | goal | measured (95% CI) | met? |",
        "| --- | --- | --- | --- |",
    ]
    for name, goal, cell, outcome in rows:
        measured = "not run" if name not in runs else fmt(cell, signed="gap" not in goal)
        lines.append(f"| {name} | {goal} | {measured} | {outcome if name in runs else 'not run'} |")
    return lines


def mem_goal(cell: Interval | None) -> str:
    if cell is None:
        return "not measured"
    misses = []
    if cell.mean > -0.05:
        misses.append(f"the mean is {cell.mean + 0.05:.3f} above −0.050")
    if cell.high >= 0:
        misses.append(f"the interval reaches {cell.high:+.3f}")
    return "**met**" if not misses else "missed: " + "; ".join(misses)


def below_zero_goal(cell: Interval | None) -> str:
    if cell is None:
        return "not measured"
    if cell.high < 0:
        return "**met**"
    return f"missed: the interval's upper end is {cell.high:+.3f} (mean {cell.mean:+.3f})"


def third_goal(cell: Interval | None) -> str:
    if cell is None:
        return "not measured (no ceiling, or the ceiling gains nothing)"
    if cell.mean >= THIRD:
        return "**met**" + ("" if cell.low >= THIRD else " (the interval reaches below 1/3)")
    return f"missed by {THIRD - cell.mean:.3f} (a third is 0.333)"


def ines_goal(cell: Interval | None) -> str:
    if cell is None:
        return "not measured"
    if cell.mean <= 0.01:
        return "**met**" + (
            "" if cell.high <= 0.01 else f" (the interval reaches {cell.high:+.3f})"
        )
    return f"missed by {cell.mean - 0.01:.3f}"


def oracle_p_lines(runs: dict[str, dict]) -> list[str]:
    """P = 0 and P = the round's side by side, per persona, with their contrasts."""
    rounds = {n: r["oracle_p"] for n, r in runs.items() if r.get("oracle_p")}
    if not rounds:
        return ["Not run this time (`--oracle-p 0`).", ""]
    p = next(iter(rounds.values()))["p"]
    lines = [
        f"The same recipe on a dataset made with `raft ft:gen --oracle-p {p:g}`: with chance "
        f"{p:g} a training exchange's memory slot also holds the 2 earlier sentences nearest "
        "its real answer"
        + "".join(
            f" (`{n}`: {r['stats']['oracle_samples']} of {r['stats']['samples']} samples)"
            for n, r in rounds.items()
            if "oracle_samples" in r["stats"]
        )
        + ". At inference both LoRAs see the memories retrieved by the question, as shipped.",
        "",
        "| persona | training data | no memories | memories (as shipped) | ceiling (+oracle) "
        "| gap closed | − `plain` | − `plain+mem` |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rounds.items():
        scores = runs[name]["final"]["scores"]
        for label, data in (("raft", "P = 0 (default)"), (r["label"], f"P = {r['p']:g}")):
            nomem = "raft-nomem" if label == "raft" else f"{label}-nomem"
            lines.append(
                f"| {name} | {data} (`{label}`) | {fmt(mean_cell(scores, BPB, nomem))} "
                f"| {fmt(mean_cell(scores, BPB, label))} "
                f"| {fmt(mean_cell(scores, BPB, label + '+oracle'))} "
                f"| {fmt(gap(scores, label, nomem, label + '+oracle'))} "
                f"| {fmt(difference(scores, BPB, label, 'plain'), signed=True)} "
                f"| {fmt(difference(scores, BPB, label, 'plain+mem'), signed=True)} |"
            )
    label = next(iter(rounds.values()))["label"]
    contrasts = [
        (label, "raft", f"oracle-p {p:g} vs the default P = 0 (same retrieval at inference)"),
        (label, "plain", f"the oracle-p {p:g} replica vs a plain fine-tune"),
        (label, f"{label}-nomem", "memories at inference, for the oracle-p model"),
    ]
    lines += [
        "",
        *contrasts_table(contrasts, {n: runs[n]["final"]["scores"] for n in rounds}),
        "",
        "Choosing the default P from these numbers would be tuning on the held-out "
        "interview: they are reported, not used to pick it. A choice needs held-out "
        "exchanges of their own (a validation interview), which these personas do not have.",
        "",
    ]
    return lines


def findings(scores: dict) -> list[str]:
    """The contrasts whose interval excludes zero, and the bound on the others."""
    cells = {(a, b): difference(scores, BPB, a, b) for a, b, _ in CONTRASTS}
    shown = [
        f"`{a}` − `{b}` ({fmt(c, signed=True)})"
        for (a, b), c in cells.items()
        if c and (c.low > 0 or c.high < 0)
    ]
    rest = [c for c in cells.values() if c and not (c.low > 0 or c.high < 0)]
    lines = ["contrasts whose interval excludes zero: " + (", ".join(shown) or "none")]
    if rest:
        bound = max(max(abs(c.low), abs(c.high)) for c in rest)
        lines.append(
            f"every other one lies within ±{bound:.3f} bits/byte, its interval spanning zero"
        )
    return lines


def persona_intro(name: str, run: dict) -> str:
    shares = run.get("overlap") or {}
    n_items = run["final"]["summary"]["n_items"]
    quoted = ", ".join(
        f"{share:.1%} of its {label} answers' word 5-grams" for label, share in shares.items()
    )
    return (
        f"- `{name}`, {PERSONA_TEXT.get(name, 'a persona')}: {quoted or 'overlap not measured'} "
        f"occur in its writing; held-out interview of {n_items} exchanges."
    )


def persona_section(name: str, run: dict) -> list[str]:
    scores = run["final"]["scores"]
    oracle = run.get("oracle_p") or {}
    label, p = oracle.get("label"), oracle.get("p")
    systems = [s for s in system_rows(label) if values(scores, BPB, s)]
    lines = [
        f"## `{name}`: the systems",
        "",
        *likelihood_table(scores, systems, label, p),
        "",
        f"Findings on `{name}`: " + "; ".join(findings(scores)) + ".",
        "",
    ]
    if run["floors"]:
        lines += [
            f"Does the judge discriminate? Over `{name}`'s training exchanges' retrieved "
            "memories (default RAFT dataset): which memories each rule keeps, against the "
            "annotated sources. A judge that keeps everything scores like the first row.",
            "",
            "| rule | precision | recall | kept |",
            "| --- | --- | --- | ---: |",
            *[f"| {rule} | {pr:.0%} | {rc:.0%} | {n} |" for rule, pr, rc, n in run["floors"]],
            "",
        ]
    lines += ["Training:", ""]
    for r in run["trained"]:
        m = {"train_loss": float("nan"), "base_eval_loss": float("nan"), "eval_loss": float("nan")}
        m |= r.get("metrics") or {}
        tag = f" (`ft:gen --oracle-p {p:g}`: `{label}`)" if r["id"] == oracle.get("model") else ""
        lines.append(
            f"- `{r['dataset']}`{tag}: {r['id']}, {m.get('steps')} steps on {m.get('samples')} "
            f"samples, train loss {m['train_loss']:.3f}, validation loss "
            f"{m['base_eval_loss']:.3f} (base) -> {m['eval_loss']:.3f}"
        )
    return [*lines, ""]


def steps_lines(runs: dict[str, dict]) -> list[str]:
    lines = [
        "A command that took about a second found every model call it needed in the cache "
        "(`cache.sqlite`) from an earlier run of the same command.",
        "",
    ]
    total = 0.0
    for name, run in runs.items():
        seconds = sum(s["seconds"] for s in run["steps"])
        total += seconds
        lines += [
            f"`{name}`:",
            "",
            "| command | seconds |",
            "| --- | ---: |",
            *[f"| `{s['command']}` | {s['seconds']:.0f} |" for s in run["steps"]],
            f"| **total** | **{seconds:.0f}** |",
            "",
        ]
    if len(runs) > 1:
        lines += [f"Both personas: **{total:.0f} s**.", ""]
    return lines


def write_page(saved: dict, doc: Path = DOC) -> Path:
    """docs/fidelity.md from study.json's contents."""
    settings, runs = saved["settings"], saved["personas"]
    by_persona = {n: r["final"]["scores"] for n, r in runs.items()}
    styles = settings.get("styles") or [settings["style"]]
    headline = {n: difference(s, BPB, "raft", "plain+mem") for n, s in by_persona.items()}
    lines = [
        "# Fidelity: does RAFT make a replica closer to the author?",
        "",
        "Written by `scripts/study` (`studies/fidelity.py`) on "
        f"{time.strftime('%Y-%m-%d')}, offline on a {os.cpu_count()}-core CPU with the "
        "embedded defaults: SmolLM2-135M-Instruct for memories, replies and training, MiniLM "
        "for retrieval. Re-run it with `./scripts/study`; `--help` lists its settings. "
        "It ran on:",
        "",
        *[persona_intro(n, r) for n, r in runs.items()],
        "",
        "A method that only helps a persona quoting its essays back would not help a real "
        "author; read the realistic persona's numbers as the ones that transfer.",
        "",
        "## The answer first",
        "",
        "**Does `raft` beat `plain+mem` on answer likelihood?** `raft` − `plain+mem` in bits "
        "per byte of the real answers: "
        + "; ".join(f"`{n}` {short_verdict(c)}" for n, c in headline.items())
        + ".",
        "",
        "Lower bits per byte is closer: the model finds the author's real answer more "
        "likely given exactly the prompt that replica sees. Numbers in brackets are 95% "
        "paired bootstrap intervals over the held-out exchanges. A row marked *ceiling* "
        "(`+oracle`) shows its model the 2 earlier sentences nearest the real answer in "
        "place of the retrieved memories: it reads the answer, so no replica can have it; it "
        "measures how much memories could carry (likelihood only: a ceiling writes no "
        "replies, so its reply metrics read n/a).",
        "",
        "## Goals (issue 29)",
        "",
        *goal_lines(runs),
        "",
        "The gap a replica closes is (none − retrieved) / (none − ceiling) of its own model: "
        "for `raft`, (`raft-nomem` − `raft`) / (`raft-nomem` − `raft+oracle`), as `ratf "
        "score` reports it. No setting of this study was chosen from these held-out numbers.",
        "",
        "## Paired differences (bits per byte, first minus second)",
        "",
        *contrasts_table(CONTRASTS, by_persona),
        "",
        "## Fraction of the oracle gap closed",
        "",
        "1 is as close as the ceiling, 0 no closer than no memories, below 0 further; paired "
        "percentile interval over items (`ratf.stats.gap_closed`).",
        "",
        *gaps_table(GAPS, by_persona),
        "",
        "## Training with the oracle (`--oracle-p`)",
        "",
        *oracle_p_lines(runs),
    ]
    for name, run in runs.items():
        lines += persona_section(name, run)
    ran = ", ".join(f"`{s}`" for s in styles)
    lines += [
        "## Memory style",
        "",
        f"Rounds run: {ran}"
        + ("" if len(styles) > 1 else " only (the other style's round runs with `--styles`)")
        + f"; the systems above use **{settings['style']}** memories (k = {settings['k']}). "
        "Recall and precision are against the essays each answer is annotated to draw on "
        "(`sources` in the interview files); the last column is the effect of those memories "
        "on the untrained model's likelihood of the held-out answers.",
        "",
        *quality_lines(runs),
        "",
        "## What this shows, and what it cannot",
        "",
        "- One small held-out interview per persona and a 135M-parameter model: intervals are "
        "wide, and a difference that does not exclude zero is *no effect shown at this "
        "scale*, not evidence of no effect.",
        "- The likelihood is computed with transformers on the checkpoint converted from the "
        "same GGUF that generates the replies, and with the trained adapters as trained.",
        "- ROUGE-L of greedy replies from a 135M model is mostly noise; the likelihood "
        "needs no generation and is the primary measure here.",
        "",
        "## Run it at a scale that could show more (a recipe, not a result)",
        "",
        "On a GPU, with a stronger generator for memories and a larger base model "
        "(any OpenAI-compatible server for the generator, a Hugging Face model to train):",
        "",
        "```bash",
        "export RAFT_DATA_DIR=build/study",
        "GEN=openai:Qwen2.5-7B-Instruct@http://127.0.0.1:8000/v1   # e.g. vLLM",
        f"raft ft:gen ines -k 6 --memories {settings['style']} --generator $GEN",
        "raft ft:gen ines -k 6 --no-memories",
        "raft ft:run ines --base-model Qwen/Qwen2.5-1.5B-Instruct --epochs 3",
        "raft ft:run ines --dataset plain --base-model Qwen/Qwen2.5-1.5B-Instruct --epochs 3",
        "raft bench:setup ines",
        "ratf run ines && ratf score ines && ratf report ines",
        "```",
        "",
        "## Commands and time taken",
        "",
        *steps_lines(runs),
    ]
    doc.parent.mkdir(exist_ok=True)
    doc.write_text("\n".join(lines), encoding="utf-8")
    return doc
