"""The retrieval study (`scripts/retrieval NAME`): which inference-time retrieval and which
gate bring the memory slot nearest the oracle ceiling, on one persona.

In build/retrieval/NAME/ (its own copy of data/NAME), through the CLI: fetch, chunk, embed,
bench:setup. Then, for each retrieval variant (studies.retrieval_rank: memory unit, k, query,
ranking, one axis at a time from today's default, then the combination that wins on the
TRAINING interviews), recall@k of the annotated sources on training and held-out exchanges,
and on the held-out items the base SmolLM2's bits/byte of the real answer with no memories,
with the variant's memories in the slot, and with the oracle's, through `BenchItem.prompt`
and `AnswerScorer` as `ratf score` does: the fraction of the oracle gap closed, paired.
Gates (keep-all, similarity floor picked on training, pass-1 LLM judge) the same way.
The same likelihoods on the TRAINING interviews' exchanges (studies.retrieval_train), the
basis on which the page chooses the default; the held-out numbers choose nothing.
Writes build/retrieval/NAME/retrieval.json and re-writes docs/retrieval.md from every
persona's record there.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from studies.retrieval_rank import KS, Turn, Variant, Writing, gate_floor, gate_score, recall_at
from studies.retrieval_train import training_items, training_likelihood, training_variants

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
CHUNKING = ["--max-tokens", "256", "--overlap", "32"]  # as the fidelity study chunks
DEFAULT = Variant()  # today's Recall.retrieve: chunks, k 6, the question, dense
HYDE_TOKENS = 80
WITHIN = (0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2)  # floors tried on training (distance)
FLOORS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def axis_variants(k: int) -> list[tuple[str, Variant]]:
    """One axis at a time from the default (at `k`)."""
    base = dataclasses.replace(DEFAULT, k=k)
    rows = [("default", base)]
    rows += [("unit", dataclasses.replace(base, unit=u)) for u in ("paragraph", "sentence")]
    rows += [("query", dataclasses.replace(base, query=q)) for q in ("previous", "hyde")]
    rows += [("ranking", dataclasses.replace(base, ranking=r)) for r in ("bm25", "hybrid")]
    return rows


def training_score(table: dict) -> float:
    """What a default is chosen by: training recall@2 and recall@6, averaged."""
    return (table["training"]["2"] + table["training"]["6"]) / 2


def best_combination(recalls: list[tuple[str, Variant, dict]]) -> Variant:
    """Per axis, the value whose variant scores best on the training exchanges."""
    best = DEFAULT
    for axis, field in (("unit", "unit"), ("query", "query"), ("ranking", "ranking")):
        rows = [(v, t) for a, v, t in recalls if a in (axis, "default")]
        winner = max(rows, key=lambda row: training_score(row[1]))[0]
        best = dataclasses.replace(best, **{field: getattr(winner, field)})
    return best


def prepare(data: Path, name: str, fresh: bool) -> None:
    """The committed persona copied into the study's folder, fetched, chunked, embedded and
    its held-out items written, each step skipped when its output is there."""
    env = os.environ | {"RAFT_DATA_DIR": str(data)}
    target = data / name
    if fresh and data.exists():
        shutil.rmtree(data)
    if not (target / "bench" / "items.jsonl").is_file():
        source = REPO / "data" / name
        if not source.is_dir():
            sys.exit(f"retrieval: no persona data/{name}")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / "persona.toml", target / "persona.toml")
        for folder in ("essays", "transcripts", "benchmark"):
            shutil.rmtree(target / folder, ignore_errors=True)
            shutil.copytree(source / folder, target / folder)
        for step in (["fetch"], ["chunk", *CHUNKING], ["embed"], ["bench:setup"]):
            print(f"retrieval: raft {step[0]} {name}", file=sys.stderr, flush=True)
            result = subprocess.run([str(BIN / "raft"), step[0], name, *step[1:]], env=env)
            if result.returncode:
                sys.exit(f"retrieval: `raft {' '.join(step)} {name}` failed")


def load_turns(persona, items) -> list[Turn]:
    from raft.transcripts import training_interviews

    turns = []
    for interview in training_interviews(persona):
        for n, (question, answer) in enumerate(interview.exchanges):
            turns.append(
                Turn(
                    f"{interview.id}#{n}", interview.date, interview.interviewer, question,
                    answer, interview.exchanges[n - 1][1] if n else "",
                    list(interview.sources[n]) if interview.sources else [], held_out=False,
                )
            )  # fmt: skip
    for item in items:
        previous = item.history[-1].answer if item.history else ""
        turns.append(
            Turn(
                item.id, item.date, item.interviewer, item.question, item.answer, previous,
                list(item.sources), held_out=True,
            )
        )  # fmt: skip
    return turns


def write_hyde(ws, spec, turns: list[Turn]) -> None:
    """HyDE: the replica's own short answer (the generator, as the persona's system prompt
    frames it, cached), to retrieve near."""
    from raft.conversation import system_prompt

    llm = ws.llm("generator")
    for turn in turns:
        messages = [
            {"role": "system", "content": system_prompt(spec.target, turn.interviewer, turn.date)},
            {"role": "user", "content": turn.question},
        ]
        reply = llm.complete(
            messages, temperature=0.0, max_tokens=HYDE_TOKENS, seed=spec.seed, stop=["\n\n"]
        )
        turn.hyde = str(reply).strip()


def recall_table(writing: Writing, turns: list[Turn], variant: Variant) -> dict:
    """Mean recall@k (k in KS) over the exchanges with sources, training and held-out."""
    found: dict[str, dict[int, list[float]]] = {"training": {}, "held_out": {}}
    for turn in turns:
        if not turn.sources:
            continue
        memories = writing.retrieve(turn, variant, k=max(KS))
        side = found["held_out" if turn.held_out else "training"]
        for k in KS:
            side.setdefault(k, []).append(recall_at(memories, turn.sources, k))
    # Per exchange too, in turn order, so that variants compare paired (the page).
    score = [(a + b) / 2 for a, b in zip(found["training"][2], found["training"][6], strict=True)]
    return {
        side: {str(k): round(sum(v) / len(v), 4) for k, v in by_k.items()}
        for side, by_k in found.items()
    } | {"n": {side: len(by_k.get(1, [])) for side, by_k in found.items()}, "scores": score}


def judge(recall, turns: list[Turn], memories: dict[str, list]) -> dict[str, list]:
    """Pass-1 verdicts (the product's batched judge) on each turn's memories; kept ones."""
    kept = {}
    for turn in turns:
        batch = [dataclasses.replace(m) for m in memories[turn.id]]
        recall.judge_questions(turn.question, batch)
        kept[turn.id] = [m for m in batch if m.useful]
    return kept


def pick_floor(turns, memories) -> tuple[float | None, float | None]:
    """The floor with the best F1 against the sources on the TRAINING exchanges."""
    train = [t for t in turns if not t.held_out]
    options = [(w, None) for w in WITHIN] + [(None, f) for f in FLOORS]

    def f1(option):
        within, floor = option
        pairs = [
            (memories[t.id], gate_floor(memories[t.id], within, floor), t.sources) for t in train
        ]
        return gate_score(pairs).f1

    return max(options, key=f1)


class Scorer:
    """The base SmolLM2's bits/byte of each held-out answer after a prompt, as `ratf score`
    scores the `base+mem` replica: the same model, budgets and prompt rendering."""

    def __init__(self, persona, items):
        from raft.backends.models import smollm2_checkpoint
        from ratf.answer_scorer import AnswerScorer
        from ratf.local_model import LocalModel, load_base, load_tokenizer
        from ratf.runner import replica_budgets

        model = LocalModel(str(smollm2_checkpoint()))
        self.scorer = AnswerScorer(load_base(model), load_tokenizer(model))
        self.budgets = list(replica_budgets(persona, items, None))
        self.items = items

    def prompt(self, item, shown) -> list:
        """NONE: no memories; ORACLE: the ceiling's; BENCH: the item's own judged ones; else
        these memories in the question's slot (the history as with memories)."""
        if shown is NONE:
            return item.prompt(self.budgets, False)
        if shown is ORACLE:
            return item.prompt(self.budgets, True, True)
        if shown is not BENCH:
            item = dataclasses.replace(item, memories=shown, kept=[m.chunk_id for m in shown])
        return item.prompt(self.budgets, True)

    def score(self, systems: dict[str, object]) -> dict[str, list[float]]:
        """Bits/byte per system and item. Item by item, so that on a CPU each prompt reuses
        the history prefix the one before it ran (the scorer keeps it), and only the slot
        and the answer are new."""
        pairs, labels = [], []
        for item in self.items:
            for label, shown in systems.items():
                memories = shown if shown in (NONE, ORACLE, BENCH) else shown[item.id]
                pairs.append((self.prompt(item, memories), item.answer))
                labels.append(label)
        found = self.scorer.score_pairs(pairs)
        out: dict[str, list[float]] = {label: [] for label in systems}
        for label, likelihood in zip(labels, found, strict=True):
            out[label].append(likelihood.bits_per_byte)
        return out


NONE, ORACLE, BENCH = "none", "oracle", "bench"  # the systems that are no variant


def effect(none: list[float], shown: list[float], oracle: list[float]) -> dict:
    from ratf.stats import gap_closed, paired_difference

    closed = gap_closed(none, shown, oracle)
    return {
        "bits_per_byte": round(sum(shown) / len(shown), 4),
        "vs_none": asdict(paired_difference(shown, none)),
        "gap_closed": asdict(closed) if closed else None,
    }


def run(name: str, data: Path, fresh: bool, judge_training: bool, keep_likelihoods: bool) -> dict:
    os.environ["RAFT_DATA_DIR"] = str(data)
    prepare(data, name, fresh)
    from raft.memories import Recall
    from raft.paths import Persona
    from raft.replica import persona_spec
    from raft.workspace import Workspace
    from ratf.items import load_items

    persona = Persona.named(name)
    ws = Workspace.open(persona)
    spec = persona_spec(ws)
    items = load_items(persona)
    turns = load_turns(persona, items)
    print(f"retrieval: {len(turns)} exchanges; HyDE answers", file=sys.stderr, flush=True)
    write_hyde(ws, spec, turns)
    writing = Writing(persona.chunks, ws.embedder)
    variants = axis_variants(6)
    recalls = [(axis, v, recall_table(writing, turns, v)) for axis, v in variants]
    best = best_combination(recalls)
    if best not in [v for _, v in variants]:
        recalls.append(("best", best, recall_table(writing, turns, best)))
        variants.append(("best", best))
    held = [t for t in turns if t.held_out]

    def memories_of(variant: Variant, which=turns) -> dict[str, list]:
        return {t.id: writing.retrieve(t, variant) for t in which}

    print("retrieval: judge and floors", file=sys.stderr, flush=True)
    default = memories_of(DEFAULT)
    recall = Recall(ws.store, ws.llm("generator"), spec)
    judged = judge(recall, turns if judge_training else held, default)
    within, floor = pick_floor(turns, default)
    floored = {t.id: gate_floor(default[t.id], within, floor) for t in turns}
    gates = {}
    for label, kept in (
        ("keep-all", default),
        ("similarity floor", floored),
        ("LLM judge", judged),
    ):
        gates[label] = {
            side: asdict(gate_score([(default[t.id], kept[t.id], t.sources) for t in group]))
            if all(t.id in kept for t in group) else None
            for side, group in (
                ("training", [t for t in turns if not t.held_out]), ("held_out", held)
            )
        }  # fmt: skip
    record = {
        "persona": name,
        "exchanges": {"training": len(turns) - len(held), "held_out": len(held)},
        "recall": [
            {"axis": axis, "variant": asdict(v), "name": v.name, **table}
            for axis, v, table in recalls
        ],
        "best": asdict(best),
        "writing": {
            "chunks": len(writing.rows),
            "essays": len({r.get("doc_id") or r["id"] for r in writing.rows}),
        },
        "floor": {"within": within, "floor": floor},
        "gates": gates,
        "hyde_examples": [t.hyde for t in turns[:2]],
        "spec": {"k": spec.k, "memory_style": spec.memory_style},
    }
    saved_text = (data / "retrieval.json").read_text() if keep_likelihoods else ""
    # Kept before the long part, so that the page can show the recall tables meanwhile.
    (data / "retrieval.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    saved = json.loads(saved_text) if saved_text else {}
    held_keys = ("none", "oracle", "effects")
    if keep_likelihoods and all(key in saved for key in held_keys):
        record |= {key: saved[key] for key in held_keys}
    else:
        print("retrieval: held-out likelihoods", file=sys.stderr, flush=True)
        systems: dict[str, object] = {"none": NONE, "bench:setup (judged)": BENCH}
        for k in KS:
            systems[f"k{k}"] = memories_of(Variant(k=k), held)
        for _, variant in variants[1:]:
            systems[variant.name] = memories_of(variant, held)
        systems |= {"gate: similarity floor": floored, "gate: LLM judge": judged}
        bits = Scorer(persona, items).score(systems | {"oracle": ORACLE})
        none, oracle = bits.pop("none"), bits.pop("oracle")
        record |= {
            "none": round(sum(none) / len(none), 4),
            "oracle": round(sum(oracle) / len(oracle), 4),
            "effects": {label: effect(none, found, oracle) for label, found in bits.items()},
        }
    if keep_likelihoods and saved.get("training_likelihood"):
        return record | {"training_likelihood": saved["training_likelihood"]}
    print("retrieval: training items and likelihoods", file=sys.stderr, flush=True)
    train_items = training_items(persona, ws, spec, data)
    train = [t for t in turns if not t.held_out]
    systems = {"none": NONE, "bench:setup (judged)": BENCH}
    systems |= {v.name: memories_of(v, train) for v in training_variants(best)}
    systems["gate: similarity floor"] = {t.id: floored[t.id] for t in train}
    if judge_training:  # pass-1 verdicts on today's memories; cached after the first run
        systems["gate: LLM judge"] = {t.id: judged[t.id] for t in train}
    systems["oracle"] = ORACLE
    found = training_likelihood(persona, train_items, systems, Scorer, effect)
    return record | {"training_likelihood": found}


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/retrieval", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="a persona under data/ (sample, ines)")
    parser.add_argument("--fresh", action="store_true", help="start from an empty folder")
    parser.add_argument(
        "--page-only", action="store_true", help="re-write docs/retrieval.md from the records"
    )
    parser.add_argument(
        "--judge-training",
        action="store_true",
        help="judge the training exchanges too (the judge's training precision/recall; slow)",
    )
    parser.add_argument(
        "--keep-likelihoods",
        action="store_true",
        help="re-measure recall and gates, keep the last run's likelihoods where recorded "
        "(held-out, training; same variants)",
    )
    args = parser.parse_args()
    if not args.name and not args.page_only:
        parser.error("name a persona (sample, ines), or give --page-only")
    root = REPO / "build" / "retrieval"
    if not args.page_only:
        record = run(
            args.name, root / args.name, args.fresh, args.judge_training, args.keep_likelihoods
        )
        path = root / args.name / "retrieval.json"
        path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    from studies.retrieval_page import write_page

    print(f"retrieval: wrote {write_page(root, REPO / 'docs' / 'retrieval.md')}")


if __name__ == "__main__":
    main()
