"""ft:gen's cost per sample on the sample persona's first 30 training exchanges, in-process
SmolLM2 (the default generator): today's path against the new one, side by side in one run.

Today's path judges each memory in a call of its own (`--no-judge-batch --history-block 1`);
the new one judges all memories of a question in one call per pass, both passes opening
with the same prompt. Both get llama.cpp's KV-cache reuse of the previous call's prefix,
which is what an in-process model has always done; the tokens it served are counted as
cached, so "evaluated" is what each path really made the model process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import BIN, REPO, Result, raft_env, run_measured

SAMPLE = REPO / "data" / "sample"
EXCHANGES = int(os.environ.get("EXCHANGES", "30"))
OLD = ["--no-judge-batch", "--history-block", "1"]
GOAL = 0.5  # of today's, per sample
GOAL_JACCARD = 0.9


def write_persona(root: Path, exchanges: int) -> None:
    """The sample persona's inputs, its training interviews cut to the first `exchanges`."""
    shutil.copytree(SAMPLE / "essays", root / "essays")
    shutil.copy(SAMPLE / "persona.toml", root / "persona.toml")
    (root / "transcripts").mkdir()
    left = exchanges
    for path in sorted((SAMPLE / "transcripts").glob("*.json")):
        if left <= 0:
            break
        interview = json.loads(path.read_text(encoding="utf-8"))
        interview["exchanges"] = interview["exchanges"][:left]
        if "sources" in interview:
            interview["sources"] = interview["sources"][:left]
        left -= len(interview["exchanges"])
        (root / "transcripts" / path.name).write_text(json.dumps(interview), encoding="utf-8")


def kept_sets(persona: Path) -> dict[str, set[str]]:
    rows = (json.loads(line) for line in (persona / "finetune" / "raft.jsonl").open())
    return {row["id"]: set(row["kept"]) for row in rows}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def run(quick: bool) -> list[Result]:
    exchanges = 6 if quick else EXCHANGES
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        write_persona(data / "sample", exchanges)
        env = raft_env(data)
        steps = (["fetch"], ["chunk", "--max-tokens", "256", "--overlap", "32"], ["embed"])
        for command in steps:
            run_measured([str(BIN / "raft"), command[0], "sample", *command[1:]], env)
        sides = {}
        for side, flags in (("today", OLD), ("new", [])):
            root = Path(folder) / side
            shutil.copytree(data, root)  # its cache holds only the embeddings
            seconds, _ = run_measured(
                [str(BIN / "raft"), "ft:gen", "sample", *flags], env | {"RAFT_DATA_DIR": str(root)}
            )
            persona = root / "sample"
            stats = json.loads((persona / "finetune" / "stats.json").read_text())
            sides[side] = (seconds, stats, kept_sets(persona))
        start = time.perf_counter()
        again = subprocess.run(
            [str(BIN / "raft"), "ft:gen", "sample"],
            env={**os.environ, **env, "RAFT_DATA_DIR": str(Path(folder) / "new")},
            capture_output=True,
            text=True,
        )
        rerun = time.perf_counter() - start
    return results(exchanges, sides, again, rerun)


def results(exchanges: int, sides: dict, again: subprocess.CompletedProcess, rerun: float):
    (old_wall, _, old_kept), (new_wall, new, new_kept) = sides["today"], sides["new"]
    samples = new["samples"]
    per = {side: stats["cost"]["per_sample"] for side, (_, stats, _) in sides.items()}
    agreement = [jaccard(old_kept[key], new_kept.get(key, set())) for key in old_kept]
    mean_jaccard = sum(agreement) / len(agreement)
    differ = [key for key, j in zip(old_kept, agreement, strict=True) if j < 1]
    calls = re.search(r"(\d+) model calls", again.stdout)
    rerun_calls = int(calls.group(1)) if calls else -1
    what = f"{exchanges} sample exchanges, in-process SmolLM2, k=6"

    def row(measured: str, value: float, raw: float, goal: str, met: bool, note: str = ""):
        return Result("ft:gen cost", measured, value, raw, value / raw, goal, met, note)

    evaluated = per["new"]["evaluated"] / per["today"]["evaluated"]
    wall = new_wall / old_wall
    memories = {side: stats["memories"] for side, (_, stats, _) in sides.items()}
    note = (
        f"{what}; raw = today's path (a call per memory per pass), raft = the new default "
        "(one call per question per pass, pass 2 opening with pass 1's prompt); both judge "
        "the same retrieved memories. Per sample, today -> new: "
        f"{per['today']['calls']:g} -> {per['new']['calls']:g} calls, prompt tokens sent "
        f"{per['today']['prompt']:,.0f} -> {per['new']['prompt']:,.0f}, of which llama.cpp's "
        f"KV cache served {per['today']['cached']:,.0f} -> {per['new']['cached']:,.0f}; "
        f"completion tokens {per['today']['completion']:,.0f} -> "
        f"{per['new']['completion']:,.0f}; model time {per['today']['seconds']:.1f} -> "
        f"{per['new']['seconds']:.1f} s. Whole runs {old_wall:.0f} s and {new_wall:.0f} s for "
        f"{samples} samples (imports, MiniLM and the store included). Memories judged useful "
        f"{memories['today']['useful_by_question']} -> {memories['new']['useful_by_question']}"
        f", consistent {memories['today']['consistent_with_answer']} -> "
        f"{memories['new']['consistent_with_answer']} of {memories['new']['retrieved']}; "
        f"{memories['new']['judged_alone']} judged alone after a patchy batch. Kept sets "
        f"differ in {len(differ)} of {len(agreement)} samples"
        + (f" ({', '.join(differ[:4])}{'…' if len(differ) > 4 else ''})" if differ else "")
        + ". Wall time follows completion tokens more than prompt tokens here: llama.cpp "
        "generates under a JSON grammar at about eight times the cost per token of reading a "
        "prompt on a CPU, and a verdict's tokens (its id, its boolean, its reason) are the "
        "same in a batch as alone, so batching saves the prompts but not the verdicts."
    )
    return [
        row(
            f"prompt tokens evaluated per sample, {what}",
            per["new"]["evaluated"],
            per["today"]["evaluated"],
            f"<= {GOAL}x today's",
            evaluated <= GOAL,
            note,
        ),
        row(
            "calls per sample",
            per["new"]["calls"],
            per["today"]["calls"],
            "fewer",
            per["new"]["calls"] < per["today"]["calls"],
        ),
        row(
            "wall s per sample (whole run)",
            new_wall / samples,
            old_wall / samples,
            f"<= {GOAL}x today's",
            wall <= GOAL,
        ),
        Result(
            "ft:gen cost",
            "kept-memory agreement with today's path, mean Jaccard",
            mean_jaccard,
            None,
            None,
            f">= {GOAL_JACCARD}",
            mean_jaccard >= GOAL_JACCARD,
        ),
        Result(
            "ft:gen cost",
            f"re-run with a warm cache: model calls ({rerun:.1f} s)",
            rerun_calls,
            None,
            None,
            "0 calls",
            again.returncode == 0 and rerun_calls == 0,
        ),
    ]
