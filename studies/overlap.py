"""How much of an author's interview answers is quoted from their writing (`scripts/overlap`).

The share of the answers' word 5-grams that also occur in the corpus (`raft fetch` first),
for the training interviews and the held-out ones apart. Real people say the ideas of their
essays in new words (a real author measured 0.7-0.8%); a persona whose answers quote its
essays (the bundled sample: 15-20%) flatters any method that shows the essays as memories.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Iterator

from raft.files import read_jsonl
from raft.paths import Persona
from raft.transcripts import load_interviews

N = 5
_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def words(text: str) -> list[str]:
    return [w.lower().replace("\u2019", "'") for w in _WORD.findall(text)]


def grams(text: str, n: int = N) -> Iterator[tuple[str, ...]]:
    tokens = words(text)
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def overlap(answers: Iterable[str], writing: set[tuple[str, ...]]) -> tuple[float, int]:
    """The share of the answers' 5-grams (each occurrence) found in the writing, and how many
    5-grams the answers have."""
    found = total = 0
    for answer in answers:
        for gram in grams(answer):
            total += 1
            found += gram in writing
    return (found / total if total else 0.0), total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/overlap", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the persona (in $RAFT_DATA_DIR, default ./data)")
    args = parser.parse_args(argv)
    persona = Persona.named(args.name)
    if not persona.corpus.is_file():
        parser.exit(2, f"overlap: no {persona.corpus}: run `raft fetch {args.name}` first\n")
    writing = {gram for row in read_jsonl(persona.corpus) for gram in grams(row["content"])}
    for label, interviews in (
        ("training", load_interviews(persona.transcripts)),
        ("held-out", load_interviews(persona.benchmark, benchmark=True)),
    ):
        share, total = overlap((a for i in interviews for _, a in i.exchanges), writing)
        print(f"{label}: {share:.1%} of {total} answer {N}-grams are in the writing")


if __name__ == "__main__":
    main()
