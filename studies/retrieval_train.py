"""The retrieval study's likelihood on the TRAINING interviews (studies.retrieval): the
basis on which a retrieval default may be chosen.

For the untrained base SmolLM2 the training interviews are unseen text as much as the
held-out one, so its bits/byte of their real answers can choose a default without looking
at the held-out interview. Their items are made as `raft bench:setup` makes the held-out
ones (`ratf.items.interview_items`: the real history with the memories judged live,
writing dated before the interview, the same budgets; the oracle from
`raft.oracle.oracle_memories`), kept in training-items.jsonl so that a re-run makes no
judge call, and scored through the same `Scorer` (`BenchItem.prompt`, `AnswerScorer`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from studies.retrieval_rank import Variant

ITEMS = "training-items.jsonl"
TODAY = Variant()  # today's Recall.retrieve: chunk/k6/question/dense


def training_variants(best: Variant) -> list[Variant]:
    """Today's, the other memory units, hybrid ranking and the training-recall winner."""
    rows = [TODAY, Variant(unit="paragraph"), Variant(unit="sentence"), Variant(ranking="hybrid")]
    return rows + ([best] if best not in rows else [])


def training_items(persona, ws, spec, folder: Path) -> list:
    """The training interviews' exchanges as bench:setup items (read back when written)."""
    from raft.files import read_jsonl, write_jsonl
    from raft.oracle import oracle_memories
    from raft.replica import Replica, ReplicaSettings, open_recall
    from raft.transcripts import training_interviews
    from ratf.items import BenchItem, interview_items

    path = folder / ITEMS
    if path.is_file():
        return [BenchItem.from_row(row) for row in read_jsonl(path)]
    recall = open_recall(ws, spec)
    replica = Replica(spec, None, recall, ReplicaSettings(), [spec.budget], "bench:setup")
    items = []
    for interview in training_interviews(persona):
        items += interview_items(replica, interview)
    made = {"spec": spec.to_row(), "generator_id": recall.llm.model_id}
    for item in items:
        item.oracle = oracle_memories(recall.store, item.answer, item.date, spec.oracle_sentences)
        item.made = made
    write_jsonl(path, [item.to_row() for item in items])
    return items


def paired(found: list[float], today: list[float]) -> dict:
    from ratf.stats import paired_difference

    return asdict(paired_difference(found, today))


def training_likelihood(
    persona,
    items: list,
    systems: dict[str, object],
    scorer_class,
    effect: Callable[[list, list, list], dict],
) -> dict:
    """Bits/byte on the training items per system, the gap closed, and each system's
    paired difference to today's retrieval (`TODAY.name` must be among the systems)."""
    bits = scorer_class(persona, items).score(systems)
    none, oracle = bits.pop("none"), bits.pop("oracle")
    today = bits[TODAY.name]
    effects = {}
    for label, found in bits.items():
        effects[label] = effect(none, found, oracle) | {
            "vs_today": None if label == TODAY.name else paired(found, today)
        }
    return {
        "n": len(items),
        "none": round(sum(none) / len(none), 4),
        "oracle": round(sum(oracle) / len(oracle), 4),
        "effects": effects,
    }


def likelihood_choice(records: list[dict]) -> tuple[list[str], str]:
    """The training-likelihood table over personas (held-out gap closed beside it), and the
    variant the rule picks: measured on every persona, lower training bits/byte than
    today's with the paired interval below zero on at least one persona and above zero on
    none; of several, the lowest mean difference ("" when none qualifies: today's stays)."""
    measured = [r for r in records if r.get("training_likelihood")]
    if not measured:
        return [], ""
    names = [r["persona"] for r in measured]
    labels = list(
        dict.fromkeys(label for r in measured for label in r["training_likelihood"]["effects"])
    )
    recall = {r["persona"]: {row["name"]: row["training"] for row in r["recall"]} for r in measured}
    head = " | ".join(
        f"{n}: gap closed [95%] | {n}: − today [95%] | {n}: recall@2/@6 | {n}: held-out gap closed"
        for n in names
    )
    lines = [f"| memories in the slot | {head} |", "|---|" + "---|---|---:|---|" * len(names)]
    clear = []
    for label in labels:
        cells, verdicts = [], []
        for record in measured:
            cell = record["training_likelihood"]["effects"].get(label)
            if cell is None:
                cells.append("not measured | – | – | –")
                verdicts.append("missing")
                continue
            diff = cell.get("vs_today")
            train = recall[record["persona"]].get(label)
            recall_cell = f"{train['2']:.2f}/{train['6']:.2f}" if train else "–"
            held = (record.get("effects") or {}).get("k6" if label == TODAY.name else label)
            cells.append(
                f"{_interval(cell['gap_closed'], 2)} | {_interval(diff) if diff else 'today'}"
                f" | {recall_cell} | {_interval(held['gap_closed'], 2) if held else '–'}"
            )
            if diff:
                worse = "worse" if diff["low"] > 0 else ""
                verdicts.append("better" if diff["high"] < 0 else worse)
        lines.append(f"| {label} | {' | '.join(cells)} |")
        candidate = label.count("/") == 3 and not {"worse", "missing"} & set(verdicts)
        if candidate and "better" in verdicts:
            clear.append((label, _mean_vs_today(measured, label)))
    chosen = min(clear, key=lambda row: row[1])[0] if clear else ""
    return lines, chosen


def _mean_vs_today(records: list[dict], label: str) -> float:
    cells = [r["training_likelihood"]["effects"][label]["vs_today"] for r in records]
    return sum(c["mean"] for c in cells) / len(cells)


def _interval(cell: dict | None, digits: int = 3) -> str:
    if not cell:
        return "–"
    sign = "" if cell["low"] > 0 or cell["high"] < 0 else " (spans 0)"
    low, high = cell["low"], cell["high"]
    return f"{cell['mean']:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{sign}"
