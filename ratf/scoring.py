"""`ratf score`: every system's replies against the real answers, with bootstrap intervals.

Systems are the run's replicas plus three controls that show each metric's range on this
very interview: the real answer itself (oracle), the author's real answer to a different
question (shuffled), and the interviewer's next question (other voice). A metric that
does not rank oracle > shuffled > other voice cannot tell the author from someone else
here, and the report says so. Each local replica's likelihood of the real answer (and of
the shuffled one, after the same prompt) is computed by `ratf.likelihood`; the human blind
test of the run, when raters have judged it, is summarized by `ratf.human`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.console import Tally
from raft.errors import UsageError
from raft.files import write_json, write_jsonl
from raft.paths import Persona
from raft.target import display_name
from raft.transcripts import Interview, training_interviews
from ratf.human import human_file, read_judgements, summarize_human
from ratf.items import BenchItem, load_items
from ratf.runner import CONTROLS

if TYPE_CHECKING:
    from rich.progress import Progress

DESCRIPTIONS = {
    "rouge_l": "ROUGE-L F1 with the real answer (shared word sequences)",
    "chrf": "chrF with the real answer (shared character n-grams)",
    "semantic": "cosine of MiniLM sentence embeddings of reply and real answer",
    "style": "stylometric closeness to the author's answers in the training interviews",
    "length_ratio": "shorter / longer length in words, reply vs real answer",
}
CONTROL_NOTES = {
    "oracle": "the real answer itself",
    "shuffled": (
        "the author's real answer to another question: a later one of the same interview, "
        "else one of another interview; never an answer the item's history shows"
    ),
    "other_voice": "the interviewer's next question, as if it were the reply",
}
# Metrics that compare a reply with the author in general, not with the real answer: the
# shuffled control is the author too, so they can only be asked to rank both above the
# other voice.
AUTHOR_METRICS = {"style"}
EXAMPLES = 3


def shuffled_answers(items: list[BenchItem], training: list[Interview]) -> dict[str, str]:
    """The author's answer to a different question, per item id: the shuffled control of
    every metric and of answer likelihood, chosen here alone.

    Never an answer the item's prompt can show (its history) nor the item's own: a later
    answer of the same interview, else one of another held-out interview, else the last
    answer of the newest training interview; "" when none is left."""
    groups = interview_groups(items)
    fallback = [training[-1].exchanges[-1][1]] if training else []
    out = {}
    for number, group in enumerate(groups):
        others = [i.answer for g in groups[number + 1 :] + groups[:number] for i in g]
        for position, item in enumerate(group):
            later = [i.answer for i in group[position + 1 :]]
            visible = {item.answer.strip()} | {h.answer.strip() for h in item.history}
            candidates = (a for a in later + others + fallback if a.strip() not in visible)
            out[item.id] = next(candidates, "")
    return out


def interview_groups(items: list[BenchItem]) -> list[list[BenchItem]]:
    """The items per held-out interview, in the order they come, each in exchange order."""
    by_interview: dict[str, list[BenchItem]] = {}
    for item in items:
        by_interview.setdefault(item.interview, []).append(item)
    return [sorted(group, key=lambda i: i.index) for group in by_interview.values()]


def control_replies(items: list[BenchItem], training: list[Interview]) -> dict[str, dict[str, str]]:
    """Replies of the three controls, per item id, from the items (and, for the shuffled
    answer of an interview's last item, the training interviews)."""
    controls: dict[str, dict[str, str]] = {name: {} for name in CONTROLS}
    controls["shuffled"] = shuffled_answers(items, training)
    for group in interview_groups(items):
        for position, item in enumerate(group):
            controls["oracle"][item.id] = item.answer
            previous = group[position - 1].question if position else item.question
            controls["other_voice"][item.id] = item.next_question or previous
    return controls


def read_predictions(path: Path, items: list[BenchItem]) -> dict[str, str]:
    """`{"id", "reply"}` lines for exactly the benchmark's items; anything else is refused."""
    known = {item.id for item in items}
    replies: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read predictions {path}: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise UsageError(f'{path}:{number}: each line needs {{"id": ..., "reply": ...}}')
        if not isinstance(row.get("reply"), str) or not row["reply"].strip():
            raise UsageError(f"{path}:{number}: item {row['id']!r} has no reply")
        if row["id"] not in known:
            raise UsageError(f"{path}:{number}: unknown item id {row['id']!r}")
        if row["id"] in replies:
            raise UsageError(f"{path}:{number}: item {row['id']!r} appears twice")
        replies[row["id"]] = row["reply"]
    missing = [i for i in sorted(known) if i not in replies]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise UsageError(f"{path}: no reply for {len(missing)} of {len(known)} items: {shown}")
    return replies


def metric_scores(
    replies: dict[str, str], items: list[BenchItem], author_texts: list[str], loaded: dict[str, Any]
) -> dict[str, list[float]]:
    """Per-item scores of one system under every metric."""
    predictions = [replies[item.id] for item in items]
    references = [item.answer for item in items]
    out = {}
    for name in ("rouge_l", "chrf", "semantic"):
        out[name] = loaded[name].compute(predictions=predictions, references=references)[name]
    style = loaded["style"].compute(
        predictions=predictions, references=references, author_texts=author_texts
    )
    out["style"], out["length_ratio"] = style["style"], style["length_ratio"]
    return {name: [float(v) for v in values] for name, values in out.items()}


def summarize(
    scores: dict[str, dict[str, list[float]]], replicas: list[str], baseline: str | None
) -> dict[str, Any]:
    """Mean and 95% interval per system and metric, paired differences to the baseline."""
    from ratf.stats import bootstrap_mean, paired_difference

    metrics = {}
    for metric, description in DESCRIPTIONS.items():
        systems = {s: asdict(bootstrap_mean(scores[s][metric])) for s in scores}
        vs = {
            s: asdict(paired_difference(scores[s][metric], scores[baseline][metric]))
            for s in replicas
            if baseline and s != baseline
        }
        oracle, shuffled, other = (systems[c]["mean"] for c in CONTROLS)
        if metric in AUTHOR_METRICS:
            ordered = min(oracle, shuffled) > other
        else:
            ordered = oracle > shuffled > other
        metrics[metric] = {
            "description": description,
            "systems": systems,
            "vs_baseline": vs,
            "controls_ordered": ordered,
        }
    return metrics


def score_replies(
    persona: Persona,
    folder: Path,
    replies: dict[str, dict[str, str]],
    replicas: dict[str, dict],
    judge: str | None = None,
    progress: Progress | None = None,
    likelihood: bool = True,
) -> dict[str, Any]:
    """Score every system, write scores.jsonl and summary.json into `folder`; the summary.
    `likelihood=False` skips answer likelihood (the one step that runs the models)."""
    from raft.console import quiet_libraries
    from ratf.metrics import load_metric

    quiet_libraries()
    items = load_items(persona)
    training = training_interviews(persona)
    author_texts = [a for interview in training for _, a in interview.exchanges]
    if not author_texts:
        raise UsageError(f"style needs the author's training interviews in {persona.transcripts}")
    # Before the long work, so that a broken file stops the command at once; `ratf report`
    # reads it again for the judgements made meanwhile.
    human = summarize_human(read_judgements(human_file(folder)))
    controls = control_replies(items, training)
    systems = {**replies, **controls}
    loaded = {name: load_metric(name) for name in ("rouge_l", "chrf", "semantic", "style")}
    tally = Tally(progress, "scoring", len(systems))
    scores = {}
    for system, by_id in systems.items():
        scores[system] = metric_scores(by_id, items, author_texts, loaded)
        tally.advance()
    names = list(replies)
    baseline = "base" if "base" in names else (names[0] if names else None)
    rows = [
        {"id": item.id, "system": system, "metric": metric, "value": values[n]}
        for system, by_metric in scores.items()
        for metric, values in by_metric.items()
        for n, item in enumerate(items)
    ]
    summary = {
        "persona": persona.name,
        "target": display_name(persona),
        "run": folder.name,
        "baseline": baseline,
        "systems": names + list(CONTROLS),
        "replicas": replicas,
        "controls": CONTROL_NOTES,
        "n_items": len(items),
        "metrics": summarize(scores, names, baseline),
        "likelihood": {"skipped": "ratf score --no-likelihood"},
        "judge": None,
        "examples": [
            {
                "id": item.id,
                "question": item.question,
                "answer": item.answer,
                "replies": {name: replies[name][item.id] for name in names},
            }
            for item in pick_examples(items)
        ],
    }
    if likelihood:
        from ratf.likelihood import likelihood_rows, score_likelihood, summarize_likelihood

        found = score_likelihood(persona, items, replicas, controls["shuffled"], progress)
        summary["likelihood"] = summarize_likelihood(found, baseline)
        rows += likelihood_rows(found)
    if judge:
        from ratf.judge import judge_run

        summary["judge"] = judge_run(persona, judge, items, replies, baseline, progress)
    if human:
        summary["human"] = human
    write_jsonl(folder / "scores.jsonl", rows)
    write_json(folder / "summary.json", summary)
    return summary


def pick_examples(items: list[BenchItem]) -> list[BenchItem]:
    """A few items spread over the interview, for the report's side-by-side view."""
    if len(items) <= EXAMPLES:
        return items
    step = len(items) / EXAMPLES
    return [items[int(step * n + step / 2)] for n in range(EXAMPLES)]
