"""The fidelity study's page, `docs/fidelity.md` (studies.fidelity): the six systems, the
paired contrasts, the memory styles, the judge against a similarity floor, and the
commands with their time."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from raft.conversation import DEFAULT_MEMORY_STYLE
from ratf.stats import Interval, bootstrap_mean, paired_difference
from studies.fidelity_runs import NAME, REPO, Step, Study

DOC = REPO / "docs" / "fidelity.md"
SYSTEMS = ["base", "base+mem", "plain", "plain+mem", "raft-nomem", "raft"]
WHAT = {
    "base": "SmolLM2-135M-Instruct, no memories",
    "base+mem": "the same base model, memories in the prompt",
    "plain": "LoRA on the plain dataset (same samples, no memories), no memories",
    "plain+mem": "the plain LoRA, memories in the prompt",
    "raft-nomem": "LoRA on the RAFT dataset (memories interpolated), no memories",
    "raft": "the RAFT LoRA, memories in the prompt (the replica RAFT ships)",
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
]


def values(scores: dict, metric: str, system: str) -> list[float]:
    by_id = scores.get(metric, {}).get(system, {})
    return [by_id[i] for i in sorted(by_id)]


def fmt(cell: Interval | None, signed: bool = False) -> str:
    if cell is None:
        return "n/a"
    spec = "+.3f" if signed else ".3f"
    return f"{cell.mean:{spec}} [{cell.low:{spec}}, {cell.high:{spec}}]"


def mean_cell(scores: dict, metric: str, system: str) -> Interval | None:
    data = values(scores, metric, system)
    return bootstrap_mean(data) if data else None


def difference(scores: dict, metric: str, a: str, b: str) -> Interval | None:
    first, second = values(scores, metric, a), values(scores, metric, b)
    if not first or len(first) != len(second):
        return None
    return paired_difference(first, second)


def verdict(cell: Interval | None) -> str:
    if cell is None:
        return "not measured"
    if cell.high < 0:
        return "**lower** (closer), excludes 0"
    if cell.low > 0:
        return "**higher** (further), excludes 0"
    return "no difference shown (interval spans 0)"


def likelihood_table(scores: dict, systems: list[str]) -> list[str]:
    lines = [
        "| system | what it is | bits/byte of the real answer ↓ | of a shuffled answer | "
        "gap (shuffled − real) | ROUGE-L ↑ | chrF ↑ | semantic ↑ |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for system in systems:
        gap = difference(scores, "bits_per_byte_shuffled", system, "bits_per_byte")
        if gap is None:  # shuffled and real live under two metric names, same items
            shuffled, real = (
                values(scores, "bits_per_byte_shuffled", system),
                values(scores, "bits_per_byte", system),
            )
            gap = paired_difference(shuffled, real) if shuffled and real else None
        lines.append(
            f"| `{system}` | {WHAT.get(system, '')} "
            f"| {fmt(mean_cell(scores, 'bits_per_byte', system))} "
            f"| {fmt(mean_cell(scores, 'bits_per_byte_shuffled', system))} "
            f"| {fmt(gap, signed=True)} "
            f"| {fmt(mean_cell(scores, 'rouge_l', system))} "
            f"| {fmt(mean_cell(scores, 'chrf', system))} "
            f"| {fmt(mean_cell(scores, 'semantic', system))} |"
        )
    return lines


def contrasts_table(scores: dict) -> list[str]:
    lines = [
        "| contrast | what it isolates | Δ bits/byte (paired, 95% CI) | reading | Δ ROUGE-L |",
        "| --- | --- | --- | --- | --- |",
    ]
    for a, b, what in CONTRASTS:
        cell = difference(scores, "bits_per_byte", a, b)
        rouge = difference(scores, "rouge_l", a, b)
        lines.append(
            f"| `{a}` − `{b}` | {what} | {fmt(cell, signed=True)} | {verdict(cell)} "
            f"| {fmt(rouge, signed=True)} |"
        )
    return lines


def findings(scores: dict) -> list[str]:
    """What the contrasts and the shuffled gaps say, in words."""
    cells = {(a, b): difference(scores, "bits_per_byte", a, b) for a, b, _ in CONTRASTS}
    shown = [
        f"`{a}` − `{b}` ({fmt(c, signed=True)})"
        for (a, b), c in cells.items()
        if c and (c.low > 0 or c.high < 0)
    ]
    rest = [c for c in cells.values() if c and not (c.low > 0 or c.high < 0)]
    lines = [
        "- Contrasts whose interval excludes zero: " + (", ".join(shown) or "none") + ".",
    ]
    if rest:
        bound = max(max(abs(c.low), abs(c.high)) for c in rest)
        lines.append(
            f"- Every other contrast, every effect of memories among them, lies within "
            f"±{bound:.3f} bits/byte with an interval that spans zero: no effect shown at "
            "this scale."
        )
    gaps = [
        paired_difference(
            values(scores, "bits_per_byte_shuffled", s), values(scores, "bits_per_byte", s)
        )
        for s in SYSTEMS
        if values(scores, "bits_per_byte", s)
    ]
    if gaps and all(g.low <= 0 <= g.high for g in gaps):
        lines.append(
            "- No system's real-versus-shuffled gap excludes zero: at this size the models "
            "find the author's answers likelier once fine-tuned, but not her answer to *this* "
            "question clearly over her answer to another one."
        )
    return lines


def quality_lines(rounds: list[dict]) -> list[str]:
    lines = [
        "| memory style | memories retrieved | recall@k of the source essays | judged useful "
        "(pass 1) | judge precision | judge recall | dropped by the gate | "
        "base+mem − base, bits/byte |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rounds:
        quality = r["stats"].get("quality") or {}
        memories = r["stats"]["memories"]
        gate = quality.get("gated") or {}
        effect = difference(r["scores"], "bits_per_byte", "base+mem", "base")
        lines.append(
            f"| {r['style']} | {memories['retrieved']} "
            f"| {pct(quality.get('recall_at_k'))} "
            f"| {memories['useful_by_question']} of {memories['retrieved']} "
            f"| {pct(quality.get('judge_precision'))} | {pct(quality.get('judge_recall'))} "
            f"| {', '.join(f'{n} {reason}' for reason, n in gate.items()) or 'none'} "
            f"| {fmt(effect, signed=True)} |"
        )
    return lines


def pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def steps_table(steps: list[Step]) -> list[str]:
    lines = [
        "A command that took about a second found every model call it needed in the cache "
        "(`cache.sqlite`), from an earlier run of the same command (here: an interrupted "
        "first run of the study); a first run of the extractive `ft:gen` makes only judge "
        "calls, fewer than the rephrased one.",
        "",
        "| command | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| `{s.command}` | {s.seconds:.0f} |" for s in steps]
    lines.append(f"| **total** | **{sum(s.seconds for s in steps):.0f}** |")
    return lines


def write_page(
    study: Study,
    rounds: list[dict],
    final: dict,
    floors: list[tuple[str, float, float, int]],
    settings: argparse.Namespace,
) -> Path:
    scores = final["scores"]
    headline = difference(scores, "bits_per_byte", "raft", "plain+mem")
    n_items = final["summary"]["n_items"]
    records = json.loads((study.persona / "models" / "registry.json").read_text())["models"]
    trained = {r["dataset"]: r for r in records if r["status"] == "succeeded"}
    lines = [
        "# Fidelity: does RAFT make a replica closer to the author?",
        "",
        "Written by `scripts/study` (`studies/fidelity.py`) on "
        f"{time.strftime('%Y-%m-%d')}, on the bundled sample persona (fictional essayist "
        f"Hollis Penwarden: 35 essays, 4 training interviews, 1 held-out interview of "
        f"{n_items} exchanges), offline on a {os.cpu_count()}-core CPU with the embedded "
        "defaults: SmolLM2-135M-Instruct for memories, replies and training, MiniLM for "
        "retrieval. Re-run it with `./scripts/study`; `--help` lists its settings.",
        "",
        "## The answer first",
        "",
        f"**Does `raft` beat `plain+mem` on answer likelihood?** Difference in bits per byte "
        f"of the real answers, `raft` − `plain+mem`: **{fmt(headline, signed=True)}** over "
        f"{n_items} held-out exchanges: {verdict(headline)}.",
        "",
        "Lower bits per byte is closer: the model finds the author's real answer more "
        "likely given exactly the prompt that replica sees. Numbers in brackets are 95% "
        "paired bootstrap intervals over the held-out exchanges.",
        "",
        *findings(scores),
        "",
        "## Six systems",
        "",
        *likelihood_table(scores, [s for s in SYSTEMS if values(scores, "bits_per_byte", s)]),
        "",
        "The *shuffled* column scores the same prompt against the author's answer to a "
        "later question of the interview (never one visible in the prompt); a positive gap "
        "shows the model conditions on the question, not only on the author's voice.",
        "",
        "## Paired differences (bits per byte, first minus second)",
        "",
        *contrasts_table(scores),
        "",
        "## Memory style",
        "",
        f"Each style's memories for the same retrieval (k = {settings.k}); recall and "
        "precision are measured against the essays each answer is known to draw on "
        "(`sources` in the sample's interview files); the last column is the effect of "
        "those memories on the untrained model's likelihood of the held-out answers.",
        "",
        *quality_lines(rounds),
        "",
        f"The study ran the six systems with **{settings.style}** memories "
        f"(the default is `{DEFAULT_MEMORY_STYLE}`).",
        "",
    ]
    if floors:
        lines += [
            "## Does the judge discriminate?",
            "",
            "Over the training exchanges' retrieved memories (RAFT dataset, style "
            f"{settings.style}): which memories each rule keeps, against the annotated "
            "sources. A judge that keeps everything scores exactly like the first row.",
            "",
            "| rule | precision | recall | kept |",
            "| --- | --- | --- | ---: |",
            *[f"| {name} | {p:.0%} | {r:.0%} | {n} |" for name, p, r, n in floors],
            "",
        ]
    lines += [
        "## Training",
        "",
        *[
            f"- `{dataset}`: {r['id']}, {r['metrics'].get('steps')} steps on "
            f"{r['metrics'].get('samples')} samples, train loss "
            f"{r['metrics'].get('train_loss', float('nan')):.3f}, validation loss "
            f"{r['metrics'].get('base_eval_loss', float('nan')):.3f} (base) -> "
            f"{r['metrics'].get('eval_loss', float('nan')):.3f}"
            for dataset, r in sorted(trained.items())
        ],
        "",
        "## What this shows, and what it cannot",
        "",
        "- One small held-out interview and a 135M-parameter model: intervals are wide, and a "
        "difference that does not exclude zero is *no effect shown at this scale*, not "
        "evidence of no effect.",
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
        f"raft ft:gen {NAME} -k 6 --memories {settings.style} --generator $GEN",
        f"raft ft:gen {NAME} -k 6 --no-memories",
        f"raft ft:run {NAME} --base-model Qwen/Qwen2.5-1.5B-Instruct --epochs 3",
        f"raft ft:run {NAME} --dataset plain --base-model Qwen/Qwen2.5-1.5B-Instruct --epochs 3",
        f"raft bench:setup {NAME}",
        f"ratf run {NAME} && ratf score {NAME} && ratf report {NAME}",
        "```",
        "",
        "## Commands and time taken",
        "",
        *steps_table(study.steps),
        "",
    ]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(lines), encoding="utf-8")
    return DOC
