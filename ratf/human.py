"""Human blind test: raters pick the author's real answer among the replicas' replies.

For each item of a run, a rater sees the question and the author's answer beside one reply
of each replica, in random order, and picks the one they take for the author's. The web
page appends each judgement as one line of `ratf/human/RUN.jsonl`; that file is the source
of truth, which `ratf score` and `ratf report` read afresh and summarize here.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raft.console import warn
from raft.errors import UsageError
from raft.files import write_failed
from raft.paths import Persona

AUTHOR = "author"  # the label of the real answer in `shown` and `picked`


@dataclass(frozen=True)
class Judgement:
    """One rater's pick among the answers shown for one item: a line of the human file."""

    rater: str
    item: str  # the BenchItem id
    shown: list[str]  # labels in the order shown: system names and AUTHOR
    picked: str  # one of `shown`
    at: str  # ISO time, UTC

    @property
    def correct(self) -> bool:
        return self.picked == AUTHOR

    def to_row(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Any) -> Judgement:
        """A judgement from a parsed line; ValueError says what is wrong with it."""
        if not isinstance(row, dict):
            raise ValueError("not a JSON object")
        missing = [name for name in ("rater", "item", "shown", "picked", "at") if name not in row]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        shown = row["shown"]
        texts = [row["rater"], row["item"], row["picked"], row["at"]]
        if not isinstance(shown, list) or not all(isinstance(x, str) for x in shown + texts):
            raise ValueError("rater, item, picked and at must be strings, shown a list of them")
        if AUTHOR not in shown or len(shown) < 2 or len(set(shown)) != len(shown):
            raise ValueError(f"shown must hold {AUTHOR!r} and other, distinct labels")
        if row["picked"] not in shown:
            raise ValueError(f"picked {row['picked']!r} is not one of shown")
        return cls(row["rater"], row["item"], list(shown), row["picked"], row["at"])


def human_file(run_dir: Path) -> Path:
    """The judgements of a run folder `ratf/runs/RUN`: `ratf/human/RUN.jsonl`."""
    run_dir = Path(run_dir)
    return run_dir.parent.parent / "human" / f"{run_dir.name}.jsonl"


def human_path(persona: Persona, run: str) -> Path:
    """The judgements of the run named `run` (a folder name, never a path)."""
    from ratf.runner import check_run_name

    runs = persona.ratf / "runs"
    return human_file(runs / check_run_name(run, runs))


def append_judgement(path: Path, judgement: Judgement) -> bool:
    """Append one judgement as one line and fsync it; False, and nothing written, when the
    rater has judged the item already.

    One write on O_APPEND keeps lines whole when several processes append at once. The
    lock makes the check and the write one step, so that two servers cannot both take a
    rater's judgement of an item, and guards dropping the unfinished line a crash may have
    left at the end (which `read_judgements` skips), so the new line never joins it."""
    import fcntl

    line = (json.dumps(judgement.to_row(), ensure_ascii=False) + "\n").encode()
    path = Path(path)
    key = (judgement.rater, judgement.item)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Read as well as write: the last byte tells whether a crash left a line unfinished.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            drop_unfinished_line(fd, path)
            if any((j.rater, j.item) == key for j in read_judgements(path)):
                return False
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    return True


def drop_unfinished_line(fd: int, path: Path) -> None:
    """Cut the file back to its last line break when it does not end with one."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return
    keep = os.pread(fd, size, 0).rfind(b"\n") + 1
    warn(f"{path}: dropped an unfinished last line left by a crash ({size - keep} bytes)")
    os.ftruncate(fd, keep)


def read_judgements(path: Path) -> list[Judgement]:
    """The judgements of a human file, [] without one.

    Only a rater's first judgement of an item counts; later ones are dropped. A bad last
    line without its line break (a write a crash cut short) is skipped with a warning; any
    other bad line is an error naming the file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    lines = text.split("\n")  # the last is "" unless the file ends mid-line
    judgements, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            judgement = Judgement.from_row(json.loads(line))
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError too
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            if isinstance(exc, RecursionError):  # the decoder gives up on deep nesting
                problem = "nested too deeply"
            if number == len(lines):
                warn(f"{path}:{number}: skipped an unfinished last line ({problem})")
                continue
            raise UsageError(f"{path}:{number}: not a judgement ({problem})") from None
        key = (judgement.rater, judgement.item)
        if key not in seen:
            seen.add(key)
            judgements.append(judgement)
    return judgements


def summarize_human(judgements: list[Judgement]) -> dict[str, Any] | None:
    """Accuracy with its 95% Wilson interval against chance, and how often each system was
    taken for the author; None without judgements.

    Accuracy near chance (1 / answers shown) means raters could not tell the author from
    the replicas. A system's `rate` is how often raters took its reply for the author's:
    a perfect replica would be taken for the author as often as the author is picked."""
    from scipy.stats import binomtest

    if not judgements:
        return None
    n = len(judgements)
    k = sum(j.correct for j in judgements)
    chance = sum(1 / len(j.shown) for j in judgements) / n
    test = binomtest(k, n, chance)
    accuracy = {**wilson(test), "n": n, "correct": k}
    if accuracy["low"] > chance:
        verdict = "above chance"
    elif accuracy["high"] < chance:
        verdict = "below chance"
    else:
        verdict = "not distinguishable from chance"
    shown: dict[str, int] = {}
    picked: dict[str, int] = {}
    per_rater: dict[str, dict[str, int]] = {}
    for judgement in judgements:
        for label in judgement.shown:
            if label != AUTHOR:
                shown[label] = shown.get(label, 0) + 1
                picked[label] = picked.get(label, 0) + (judgement.picked == label)
        rater = per_rater.setdefault(judgement.rater, {"judgements": 0, "correct": 0})
        rater["judgements"] += 1
        rater["correct"] += judgement.correct
    systems = {}
    for label, times in shown.items():
        cell = wilson(binomtest(picked[label], times))
        systems[label] = {"shown": times, "picked": picked[label], "rate": cell["mean"]}
        systems[label] |= {"low": cell["low"], "high": cell["high"]}
    return {
        "judgements": n,
        "raters": len(per_rater),
        "items": len({j.item for j in judgements}),
        "accuracy": accuracy,
        "chance": chance,
        "p_value": float(test.pvalue),
        "verdict": verdict,
        "systems": systems,
        "per_rater": per_rater,
    }


def wilson(test: Any) -> dict[str, float]:
    """A binomial test's proportion with its 95% Wilson interval."""
    interval = test.proportion_ci(confidence_level=0.95, method="wilson")
    return {"mean": test.k / test.n, "low": float(interval.low), "high": float(interval.high)}


def human_line(human: dict[str, Any]) -> str:
    """The result in one line, e.g. `human blind test: 7 of 10 right (70%, 95% CI 40–89%),
    chance 33%: above chance`."""
    acc = human["accuracy"]
    return (
        f"human blind test: {acc['correct']} of {acc['n']} right ({acc['mean']:.0%}, 95% CI "
        f"{acc['low'] * 100:.0f}–{acc['high']:.0%}), chance {human['chance']:.0%}: "
        f"{human['verdict']}"
    )


def systems_line(human: dict[str, Any], order: list[str] | None = None) -> str:
    """How often each system was taken for the author, in one line."""
    systems = human["systems"]
    cells = [
        f"{s} {systems[s]['picked']} of {systems[s]['shown']} ({systems[s]['rate']:.0%})"
        for s in ordered_systems(human, order)
    ]
    return "taken for the author: " + ", ".join(cells)


def ordered_systems(human: dict[str, Any], order: list[str] | None = None) -> list[str]:
    """The systems judged, those in `order` (the run's replicas) first, in that order."""
    rank = {name: n for n, name in enumerate(order or [])}
    return sorted(human.get("systems") or {}, key=lambda s: rank.get(s, len(rank)))
