"""The fidelity study (`scripts/study`): does training with interpolated memories make a
replica closer to the author than plain fine-tuning on the same interviews?

It runs on the sample persona, offline, through the CLI as a user would, in build/study/:

1. fetch, chunk and embed the essays;
2. for each memory style: `ft:gen`, `bench:setup`, then the base model without and with
   those memories (`ratf run`, `ratf score`): which memories help an untrained model, and
   how good they are against the essays each answer is known to draw on;
3. with the default style: the plain dataset (`ft:gen --no-memories`), one LoRA on each
   dataset, the six systems, `ratf score` and `ratf report`;
4. `docs/fidelity.md`: the tables, the paired differences, the commands and the time taken.

Lower bits per byte of the real answer is closer to the author; every difference is paired
by item with a 95% bootstrap interval, and the page says whether it excludes zero.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from raft.conversation import DEFAULT_MEMORY_STYLE, MEMORY_STYLES
from ratf.stats import Interval, bootstrap_mean, paired_difference

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
NAME = "sample"
DOC = REPO / "docs" / "fidelity.md"
CHUNKING = ["--max-tokens", "256", "--overlap", "32"]
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


@dataclass
class Step:
    command: str
    seconds: float


class Study:
    """Runs the CLI in the study's data folder and keeps each command with its time."""

    def __init__(self, data: Path):
        self.data = data
        self.persona = data / NAME
        self.env = os.environ | {"RAFT_DATA_DIR": str(data)}
        self.steps: list[Step] = []

    def run(self, program: str, *args: str) -> str:
        command = " ".join([program, *args])
        print(f"study: {command}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            [str(BIN / program), *args], env=self.env, text=True, stdout=subprocess.PIPE
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"study: `{command}` failed (exit {result.returncode})")
        self.steps.append(Step(command, seconds))
        return result.stdout

    def latest_scores(self) -> tuple[dict, dict[str, dict[str, dict[str, float]]]]:
        """The newest scored run: its summary, and metric -> system -> item id -> value."""
        runs = sorted((self.persona / "ratf" / "runs").glob("*/summary.json"))
        folder = runs[-1].parent
        scores: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for line in (folder / "scores.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            scores[row["metric"]][row["system"]][row["id"]] = float(row["value"])
        return json.loads(runs[-1].read_text(encoding="utf-8")), scores

    def stats(self, dataset: str = "raft") -> dict:
        folder = self.persona / "finetune" / ("" if dataset == "raft" else dataset)
        return json.loads((folder / "stats.json").read_text(encoding="utf-8"))


def prepare(data: Path, fresh: bool) -> None:
    """The committed sample inputs, copied into the study's own folder."""
    if fresh and data.exists():
        shutil.rmtree(data)
    target = data / NAME
    target.mkdir(parents=True, exist_ok=True)
    source = REPO / "data" / NAME
    shutil.copy2(source / "persona.toml", target / "persona.toml")
    for folder in ("essays", "transcripts", "benchmark"):
        shutil.rmtree(target / folder, ignore_errors=True)
        shutil.copytree(source / folder, target / folder)


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


# -- the runs ---------------------------------------------------------------------------------


def style_round(study: Study, style: str, k: int, budget: int, reply_tokens: int) -> dict:
    """ft:gen with one memory style, items, base without and with memories, scored."""
    budgeted = ["-k", str(k), "--max-tokens", str(budget)]
    study.run("raft", "ft:gen", NAME, *budgeted, "--memories", style)
    study.run("raft", "bench:setup", NAME)
    study.run(
        "ratf", "run", NAME, "--max-tokens", str(reply_tokens),
        "--replica", "base=local,memories=off", "--replica", "base+mem=local",
    )  # fmt: skip
    study.run("ratf", "score", NAME)
    summary, scores = study.latest_scores()
    return {"style": style, "summary": summary, "scores": scores, "stats": study.stats()}


def judge_floor_table(study: Study) -> list[tuple[str, float, float, int]]:
    """Judge precision/recall against the annotated sources, beside what a similarity floor
    (keep the nearest memories only, no LLM) would give on the same retrieved memories."""
    from raft.memory_quality import source_match

    rows = [
        json.loads(line)
        for line in (study.persona / "finetune" / "raft.jsonl").read_text().splitlines()
    ]
    memories = [
        (m, bool(row.get("sources")) and source_match_row(source_match, m, row["sources"]))
        for row in rows
        if row.get("sources")
        for m in row["memories"]
    ]
    if not memories:
        return []

    def score(name: str, keep) -> tuple[str, float, float, int]:
        kept = [relevant for m, relevant in memories if keep(m)]
        relevant = sum(r for _, r in memories)
        precision = sum(kept) / len(kept) if kept else 0.0
        recall = sum(kept) / relevant if relevant else 0.0
        return name, precision, recall, len(kept)

    distances = sorted(m["distance"] for m, _ in memories)
    table = [score("keep every retrieved memory", lambda m: True)]
    table.append(score("pass-1 judge (question only)", lambda m: bool(m.get("useful"))))
    for share in (0.5, 0.25):
        floor = distances[max(0, int(len(distances) * share) - 1)]
        table.append(
            score(
                f"similarity floor: nearest {share:.0%} (distance <= {floor:.3f})",
                lambda m, f=floor: m["distance"] <= f,
            )  # fmt: skip
        )
    return table


def source_match_row(match, memory_row: dict, sources: list[str]) -> bool:
    from raft.memories import Memory

    return match(Memory.from_row(memory_row), sources)


# -- the page ---------------------------------------------------------------------------------


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


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/study", description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO / "build" / "study")
    parser.add_argument("--fresh", action="store_true", help="start from an empty folder")
    parser.add_argument("-k", "--k", type=int, default=2, help="memories per question")
    parser.add_argument("--budget", type=int, default=2048, help="ft:gen --max-tokens")
    parser.add_argument("--epochs", type=int, default=2, help="LoRA epochs per dataset")
    parser.add_argument("--reply-tokens", type=int, default=160, help="ratf run --max-tokens")
    parser.add_argument(
        "--style", choices=MEMORY_STYLES, default=DEFAULT_MEMORY_STYLE, help="for the six systems"
    )
    parser.add_argument(
        "--page-only",
        action="store_true",
        help="re-write docs/fidelity.md from the last run's results (study.json), running nothing",
    )
    args = parser.parse_args()
    study = Study(args.data)
    record = args.data / "study.json"
    if args.page_only:
        saved = json.loads(record.read_text(encoding="utf-8"))
        study.steps = [Step(**step) for step in saved["steps"]]
        settings = argparse.Namespace(**saved["settings"])
        floors = [tuple(row) for row in saved["floors"]]
        path = write_page(study, saved["rounds"], saved["final"], floors, settings)
        print(f"study: wrote {path}")
        return
    prepare(args.data, args.fresh)
    study.run("raft", "fetch", NAME)
    study.run("raft", "chunk", NAME, *CHUNKING)
    study.run("raft", "embed", NAME)
    # The chosen style goes last, so its dataset and items are the ones the six systems use.
    styles = [s for s in MEMORY_STYLES if s != args.style] + [args.style]
    rounds = [style_round(study, s, args.k, args.budget, args.reply_tokens) for s in styles]
    floors = judge_floor_table(study)
    study.run("raft", "ft:gen", NAME, "-k", str(args.k), "--max-tokens", str(args.budget),
              "--no-memories")  # fmt: skip
    for dataset in ("plain", "raft"):
        study.run("raft", "ft:run", NAME, "--dataset", dataset, "--epochs", str(args.epochs))
    study.run("ratf", "run", NAME, "--max-tokens", str(args.reply_tokens))
    study.run("ratf", "score", NAME)
    summary, scores = study.latest_scores()
    study.run("ratf", "report", NAME)
    final = {"summary": summary, "scores": scores}
    settings = {k: v for k, v in vars(args).items() if k in ("k", "budget", "epochs", "style")}
    record.write_text(
        json.dumps(
            {
                "settings": settings,
                "steps": [vars(step) for step in study.steps],
                "rounds": rounds,
                "final": final,
                "floors": floors,
            }
        ),
        encoding="utf-8",
    )
    path = write_page(study, rounds, final, floors, argparse.Namespace(**settings))
    print(f"study: wrote {path}")


if __name__ == "__main__":
    main()
