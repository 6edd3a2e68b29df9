"""The fidelity study's runs (studies.fidelity): the CLI in the study's own data folder,
each command kept with its time, and what each round of it measured, per persona."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from raft.paths import Persona
from raft.training.registry import SUCCEEDED, ModelRecord, load_records

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
PERSONAS = ("sample", "ines")
CHUNKING = ["--max-tokens", "256", "--overlap", "32"]


@dataclass
class Step:
    command: str
    seconds: float


@dataclass(frozen=True)
class Plan:
    """What one persona's run does: the settings `scripts/study` was given."""

    k: int
    budget: int
    epochs: int
    reply_tokens: int
    style: str
    styles: tuple[str, ...]  # memory-style rounds beside `style` (the expensive ones)
    oracle_p: float  # 0: no oracle-p round
    threads: int | None


def oracle_label(p: float) -> str:
    """The replica label of the LoRA trained with `ft:gen --oracle-p P`."""
    return f"raft-p{p:g}"


class Study:
    """Runs the CLI in the study's data folder and keeps each command with its time."""

    def __init__(self, data: Path, name: str, threads: int | None = None):
        self.data = data
        self.name = name
        self.persona = data / name
        self.env = os.environ | {"RAFT_DATA_DIR": str(data)}
        self.threads = threads
        self.steps: list[Step] = []

    def run(self, program: str, command: str, *args: str, threaded: bool = True) -> str:
        """`program command NAME args...`, with `--threads` where the command takes it."""
        argv = [command, self.name, *args]
        if threaded and self.threads:
            argv += ["--threads", str(self.threads)]
        line = " ".join([program, *argv])
        print(f"study: {line}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            [str(BIN / program), *argv], env=self.env, text=True, stdout=subprocess.PIPE
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"study: `{line}` failed (exit {result.returncode})")
        self.steps.append(Step(line, seconds))
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

    def trained(self) -> list[ModelRecord]:
        """The persona's fine-tunes that succeeded, oldest first (models/registry.json)."""
        records = load_records(Persona(self.name, self.persona))
        return [r for r in records if r.status == SUCCEEDED and r.is_chat_model]

    def newest(self, dataset: str) -> ModelRecord:
        return [r for r in self.trained() if r.dataset == dataset][-1]


def prepare(data: Path, name: str, fresh: bool) -> None:
    """The committed persona inputs, copied into the study's own folder (data/NAME is left
    alone); `fresh` empties the folder first."""
    if fresh and data.exists():
        shutil.rmtree(data)
    target = data / name
    target.mkdir(parents=True, exist_ok=True)
    source = REPO / "data" / name
    shutil.copy2(source / "persona.toml", target / "persona.toml")
    for folder in ("essays", "transcripts", "benchmark"):
        shutil.rmtree(target / folder, ignore_errors=True)
        shutil.copytree(source / folder, target / folder)


def measure_overlap(name: str, root: Path) -> dict[str, float]:
    """The share of the answers' word 5-grams found in the writing (studies/overlap.py), for
    the training and the held-out interviews: how much the persona quotes its essays."""
    from raft.files import read_jsonl
    from raft.paths import Persona
    from raft.transcripts import load_interviews
    from studies.overlap import grams, overlap

    found = Persona(name, root)
    writing = {gram for row in read_jsonl(found.corpus) for gram in grams(row["content"])}
    shares = {}
    for label, interviews in (
        ("training", load_interviews(found.transcripts)),
        ("held-out", load_interviews(found.benchmark, benchmark=True)),
    ):
        shares[label] = overlap((a for i in interviews for _, a in i.exchanges), writing)[0]
    return shares


def style_round(study: Study, style: str, plan: Plan) -> dict:
    """ft:gen with one memory style, items, base without and with memories, scored."""
    budgeted = ["-k", str(plan.k), "--max-tokens", str(plan.budget)]
    study.run("raft", "ft:gen", *budgeted, "--memories", style)
    stats = study.stats()
    study.run("raft", "bench:setup")
    study.run(
        "ratf", "run", "--max-tokens", str(plan.reply_tokens),
        "--replica", "base=local,memories=off", "--replica", "base+mem=local",
    )  # fmt: skip
    study.run("ratf", "score")
    _, scores = study.latest_scores()
    keep = {m: {s: scores[m][s] for s in ("base", "base+mem") if s in scores[m]} for m in scores}
    return {"style": style, "scores": keep, "stats": stats}


def oracle_p_round(study: Study, plan: Plan) -> dict:
    """A RAFT LoRA on `ft:gen --oracle-p P`: which model it is, and its dataset's stats.
    ft:gen writes finetune/raft.jsonl and a plain `ratf run` picks the newest LoRA per
    dataset, so this runs before the default dataset and its LoRA."""
    budgeted = ["-k", str(plan.k), "--max-tokens", str(plan.budget)]
    oracle = ["--oracle-p", f"{plan.oracle_p:g}"]
    study.run("raft", "ft:gen", *budgeted, "--memories", plan.style, *oracle)
    stats = study.stats()  # oracle_samples: how many samples showed the oracle
    study.run("raft", "ft:run", "--dataset", "raft", "--epochs", str(plan.epochs))
    return {
        "p": plan.oracle_p,
        "label": oracle_label(plan.oracle_p),
        "model": study.newest("raft").id,
        "stats": stats,
    }


def run_persona(study: Study, plan: Plan, fresh: bool) -> dict:
    """One persona's whole study: corpus, optional style rounds, the plain, oracle-p and RAFT
    LoRAs, the eight systems with their ceilings, scored. What the page needs, as JSON."""
    prepare(study.data, study.name, fresh)
    study.run("raft", "fetch", threaded=False)
    study.run("raft", "chunk", *CHUNKING, threaded=False)
    study.run("raft", "embed")
    shares = measure_overlap(study.name, study.persona)
    rounds = [style_round(study, s, plan) for s in plan.styles if s != plan.style]
    budgeted = ["-k", str(plan.k), "--max-tokens", str(plan.budget)]
    epochs = ["--epochs", str(plan.epochs)]
    study.run("raft", "ft:gen", *budgeted, "--no-memories")
    study.run("raft", "ft:run", "--dataset", "plain", *epochs)
    oracle_round = oracle_p_round(study, plan) if plan.oracle_p > 0 else None
    study.run("raft", "ft:gen", *budgeted, "--memories", plan.style)
    rounds.append({"style": plan.style, "stats": study.stats()})  # scores: the final run's
    floors = judge_floor_table(study)
    study.run("raft", "ft:run", "--dataset", "raft", *epochs)
    study.run("raft", "bench:setup")
    plain, raft = study.newest("plain").id, study.newest("raft").id
    replicas = [
        "base=local,memories=off", "base+mem=local",
        f"plain={plain},memories=off", f"plain+mem={plain}",
        f"raft-nomem={raft},memories=off", f"raft={raft}",
    ]  # fmt: skip
    if oracle_round:
        label, model = oracle_round["label"], oracle_round["model"]
        replicas += [f"{label}-nomem={model},memories=off", f"{label}={model}"]
    study.run(
        "ratf", "run", "--max-tokens", str(plan.reply_tokens), *(f"--replica={r}" for r in replicas)
    )
    study.run("ratf", "score")
    summary, scores = study.latest_scores()
    study.run("ratf", "report", threaded=False)
    return {
        "steps": [vars(step) for step in study.steps],
        "overlap": shares,
        "rounds": rounds,
        "oracle_p": oracle_round,
        "final": {"summary": summary, "scores": scores},
        "floors": floors,
        "trained": [asdict(r) for r in study.trained()],
    }


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
