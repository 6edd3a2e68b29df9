"""`python -m benchmarks [--only STAGE,...] [--quick]`: run, print the table, write the doc."""

from __future__ import annotations

import argparse
import importlib
import time

from benchmarks.report import print_table, update_markdown, write_markdown

STAGES = [
    "fetch",
    "chunk",
    "embed",
    "retrieve",
    "ftgen",
    "ftgen_cost",
    "train",
    "batching",
    "memory",
    "likelihood",
    "replay",
]


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated stages ({', '.join(STAGES)})")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one repeat: to try the script"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --only: replace those stages' rows in docs/benchmarks.md, keep the rest",
    )
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else STAGES
    unknown = set(chosen) - set(STAGES)
    if unknown:
        parser.error(f"unknown stage(s): {', '.join(sorted(unknown))}")
    results, seconds = [], {}
    for stage in chosen:
        start = time.perf_counter()
        print(f"bench: {stage} ...", flush=True)
        results += importlib.import_module(f"benchmarks.{stage}").run(args.quick)
        seconds[stage] = time.perf_counter() - start
    print_table(results)
    if args.quick:
        return
    if not args.only:
        print(f"bench: wrote {write_markdown(results, seconds)}")
    elif args.update:
        print(f"bench: updated {update_markdown(results, seconds)}")


if __name__ == "__main__":
    main()
