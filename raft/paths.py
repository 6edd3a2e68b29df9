"""The persona folder and its files, in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from raft.errors import UsageError

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# The RAFT dataset (memories interpolated) and the same samples without memories, the
# plain fine-tuning baseline that isolates what the memories add.
DATASETS = ("raft", "plain")


def data_dir() -> Path:
    """Where persona folders live: `RAFT_DATA_DIR`, else `./data`."""
    return Path(os.environ.get("RAFT_DATA_DIR") or "data")


def ft_gen_command(persona: Persona, dataset: str = "raft") -> str:
    """The command that writes a dataset, for error messages."""
    return f"raft ft:gen {persona.name}" + (" --no-memories" if dataset == "plain" else "")


def check_name(name: str) -> str:
    """Return `name` if it is a valid persona name, else raise a one-line UsageError."""
    if not NAME_RE.match(name or ""):
        raise UsageError(
            f"invalid persona name {name!r}: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Persona:
    """Paths of one persona's folder `RAFT_DATA_DIR/<name>/` (see the design contract)."""

    name: str
    root: Path

    @classmethod
    def named(cls, name: str) -> Persona:
        return cls(check_name(name), data_dir() / name)

    @property
    def config(self) -> Path:
        return self.root / "persona.toml"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def chunks(self) -> Path:
        return self.root / "chunks.jsonl"

    @property
    def chroma(self) -> Path:
        return self.root / "chroma"

    @property
    def transcripts(self) -> Path:
        return self.root / "transcripts"

    @property
    def benchmark(self) -> Path:
        return self.root / "benchmark"

    @property
    def finetune(self) -> Path:
        return self.root / "finetune"

    def dataset(self, name: str = "raft") -> Path:
        """The folder of a dataset's files: finetune/ for RAFT, finetune/plain/ for plain."""
        if name not in DATASETS:
            raise UsageError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
        return self.finetune if name == "raft" else self.finetune / name

    @property
    def cache_keys(self) -> Path:
        """The cache keys of the model calls behind finetune/raft.jsonl, one a line."""
        return self.finetune / "cache_keys.txt"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def bench(self) -> Path:
        return self.root / "bench"

    @property
    def ratf(self) -> Path:
        return self.root / "ratf"

    @property
    def cache(self) -> Path:
        return self.root / "cache.sqlite"

    def require(self) -> Persona:
        """Raise a clear error when the persona folder does not exist yet."""
        if not self.root.is_dir():
            raise UsageError(
                f"unknown persona {self.name!r}: no folder {self.root} "
                f"(create it, or run `raft fetch {self.name} --from SOURCE`)"
            )
        return self
