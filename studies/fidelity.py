"""The fidelity study (`scripts/study`): does training with interpolated memories make a
replica closer to the author than plain fine-tuning on the same interviews?

It runs on both bundled personas, offline, through the CLI as a user would, in build/study/:
`sample` (flattering: its answers quote its essays) and `ines` (realistic: her answers say
her essays' ideas in new words). For each:

1. fetch, chunk and embed the essays; how much of the answers is quoted from them;
2. with `--styles`, a round per other memory style: `ft:gen`, `bench:setup`, the base model
   without and with those memories (`ratf run`, `ratf score`);
3. the plain dataset (`ft:gen --no-memories`) and its LoRA; a LoRA on a dataset made with
   `ft:gen --oracle-p P` (memories nearest the real answer with chance P); last the default
   RAFT dataset and its LoRA, so it is the one a plain `ratf run` would pick;
4. `bench:setup` (items with their oracle memories), the eight systems, `ratf score` (which
   adds a `+oracle` ceiling beside every replica shown memories) and `ratf report`;
5. `docs/fidelity.md`: the tables, the paired differences, the fraction of the oracle gap
   closed, the goals of issue 29, the commands and the time taken.

Lower bits per byte of the real answer is closer to the author; every difference is paired
by item with a 95% bootstrap interval, and the page says whether it excludes zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from raft.conversation import DEFAULT_MEMORY_STYLE, MEMORY_STYLES
from studies.fidelity_runs import PERSONAS, REPO, Plan, Study, run_persona


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/study", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    parser.add_argument("--data", type=Path, default=REPO / "build" / "study")
    parser.add_argument("--fresh", action="store_true", help="start from an empty folder")
    parser.add_argument(
        "--persona",
        action="append",
        choices=PERSONAS,
        help="a bundled persona to run (repeatable; default: both, sample then ines)",
    )
    parser.add_argument("-k", "--k", type=int, default=2, help="memories per question")
    parser.add_argument("--budget", type=int, default=2048, help="ft:gen --max-tokens")
    parser.add_argument("--epochs", type=int, default=2, help="LoRA epochs per dataset")
    parser.add_argument("--reply-tokens", type=int, default=160, help="ratf run --max-tokens")
    parser.add_argument(
        "--style", choices=MEMORY_STYLES, default=DEFAULT_MEMORY_STYLE, help="for the systems"
    )
    parser.add_argument(
        "--styles",
        action="store_true",
        help="also a round per other memory style (base model only; slow: the rephrased "
        "style makes an LLM call per memory)",
    )
    parser.add_argument(
        "--oracle-p",
        type=float,
        default=0.5,
        metavar="P",
        help="also train and score a RAFT LoRA on `ft:gen --oracle-p P` (0: skip)",
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="passed to every command that takes --threads"
    )
    parser.add_argument(
        "--page", type=Path, default=REPO / "docs" / "fidelity.md", help="the page to write"
    )
    parser.add_argument(
        "--page-only",
        action="store_true",
        help="re-write the page from the last run's results (study.json), running nothing",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.oracle_p <= 1:
        parser.error(f"--oracle-p must be between 0 and 1, got {args.oracle_p}")
    return args


def usage_error(message: str) -> None:
    print(f"study: {message}", file=sys.stderr)
    raise SystemExit(2)


def write_page(saved: dict, page: Path) -> Path:
    # Imported when the page is written, so a run's results (study.json) are kept even if
    # the page writer fails; `--page-only` then writes the page from them.
    from studies.fidelity_page import write_page as write

    return write(saved, page)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    record = args.data / "study.json"
    if args.page_only:
        if not record.is_file():
            usage_error(f"no {record}: run ./scripts/study first (--page-only reads it)")
        saved = json.loads(record.read_text(encoding="utf-8"))
        if "personas" not in saved:
            usage_error(f"{record} is from the one-persona study; re-run ./scripts/study")
        print(f"study: wrote {write_page(saved, args.page)}")
        return
    plan = Plan(
        k=args.k,
        budget=args.budget,
        epochs=args.epochs,
        reply_tokens=args.reply_tokens,
        style=args.style,
        styles=tuple(MEMORY_STYLES) if args.styles else (args.style,),
        oracle_p=args.oracle_p,
        threads=args.threads,
    )
    names = list(dict.fromkeys(args.persona or PERSONAS))
    personas = {}
    for n, name in enumerate(names):
        # --fresh empties the whole folder once, before the first persona.
        personas[name] = run_persona(
            Study(args.data, name, args.threads), plan, args.fresh and n == 0
        )
    saved = {"settings": vars(plan) | {"styles": list(plan.styles)}, "personas": personas}
    record.write_text(json.dumps(saved), encoding="utf-8")
    print(f"study: wrote {write_page(saved, args.page)}")


if __name__ == "__main__":
    main()
