"""Randomly initialised Llama-shaped models with the shipped SmolLM2 tokenizer.

For measuring training speed and for multi-process mechanics without a download: the
weights are noise, but the shapes (and so the FLOPs and memory) are a real model's, and the
folder is a Hugging Face checkpoint `raft ft:run --base-model FOLDER` trains like any other.

`python -m benchmarks.random_model FOLDER [--preset tiny|1b]` writes one from the shell.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SEED = 20261123

# Architecture per preset; vocabulary and special tokens come from the SmolLM2 tokenizer.
PRESETS: dict[str, dict[str, int]] = {
    # A few M parameters (almost all in the tied embedding): a step in well under a second
    # on one CPU core.
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 256,
    },
    # Llama-3.2-1B's body (about 1.1B parameters with SmolLM2's 49k vocabulary).
    "1b": {
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
    },
}


def write_random_llama(folder: Path, preset: str) -> Path:
    """A seeded random Llama of `preset` ("tiny" or "1b") saved in `folder` as safetensors
    with the SmolLM2 tokenizer; the same preset gives the same weights (on one torch build
    and device). Returns the folder. A folder already complete for this preset is reused."""
    import json

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from raft import accelerator
    from raft.backends.models import smollm2_checkpoint
    from raft.console import quiet_libraries

    quiet_libraries()
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: one of {', '.join(PRESETS)}")
    folder = Path(folder)
    marker = folder / ".complete"
    if marker.is_file() and json.loads(marker.read_text()) == {"preset": preset, "seed": SEED}:
        return folder
    source = smollm2_checkpoint()
    tokenizer = AutoTokenizer.from_pretrained(source)
    smol = json.loads((source / "config.json").read_text())
    config = LlamaConfig(
        **PRESETS[preset],
        vocab_size=len(tokenizer),
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=smol.get("bos_token_id"),
        eos_token_id=smol.get("eos_token_id"),
        pad_token_id=smol.get("pad_token_id"),
    )
    # The 1B model is initialised where it will train (seconds on a GPU, minutes on a CPU)
    # and stored in the dtype it trains in; the tiny one in float32, as a CPU trains it.
    big = preset != "tiny"
    dtype = accelerator.dtype() if big else torch.float32
    torch.manual_seed(SEED)
    with torch.device(accelerator.device() if big else "cpu"):
        model = LlamaForCausalLM(config).to(dtype)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    marker.write_text(json.dumps({"preset": preset, "seed": SEED}))  # last: the folder is whole
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.random_model", description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    args = parser.parse_args()
    print(write_random_llama(args.folder, args.preset))


if __name__ == "__main__":
    main()
