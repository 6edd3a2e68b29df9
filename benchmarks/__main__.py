"""`python -m benchmarks [--only STAGE,...] [--quick]`: run, print the table, write the doc."""

from __future__ import annotations

import argparse
import importlib
import time

from benchmarks.report import print_table, write_markdown

STAGES = ["fetch", "chunk", "embed", "retrieve", "ftgen", "train", "memory", "likelihood"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--only", help=f"comma-separated stages ({', '.join(STAGES)})")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one repeat: to try the script"
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
    if not args.quick and not args.only:
        path = write_markdown(results, seconds)
        print(f"bench: wrote {path}")


if __name__ == "__main__":
    main()
