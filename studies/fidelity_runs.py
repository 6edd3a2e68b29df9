"""The fidelity study's runs (studies.fidelity): the CLI in the study's own data folder,
each command kept with its time, and what each round of it measured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
NAME = "sample"
CHUNKING = ["--max-tokens", "256", "--overlap", "32"]


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
