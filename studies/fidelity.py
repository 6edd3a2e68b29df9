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
from pathlib import Path

from raft.conversation import DEFAULT_MEMORY_STYLE, MEMORY_STYLES
from studies.fidelity_page import write_page
from studies.fidelity_runs import (
    CHUNKING,
    NAME,
    REPO,
    Step,
    Study,
    judge_floor_table,
    prepare,
    style_round,
)


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
