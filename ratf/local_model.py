"""A local model as transformers loads it for answer likelihood: the base model on the
accelerator in its dtype (else on the CPU in float32), its adapter's tokenizer, and where it
runs, as a user reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LocalModel:
    """A model as transformers loads it: a checkpoint folder (or a GGUF file in one) and
    an optional peft adapter, whose tokenizer is saved beside it."""

    base: str
    gguf_file: str = ""
    adapter: str = ""

    @property
    def name(self) -> str:
        base = str(Path(self.base) / self.gguf_file) if self.gguf_file else self.base
        return f"{base} + {self.adapter}" if self.adapter else base


def load_base(model: LocalModel, dtype: Any = None) -> Any:
    """The base model on the accelerator in its dtype (bf16 on a GPU that has it, fp16 on
    one that does not), else on the CPU in float32; `dtype` forces one (a test, a bench)."""
    from transformers import AutoModelForCausalLM

    from raft import accelerator
    from raft.console import quiet_libraries

    quiet_libraries()
    device = accelerator.device()
    options: dict[str, Any] = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    if device != "cpu":  # straight onto the GPU, not through host memory
        options["device_map"] = device
    loaded = AutoModelForCausalLM.from_pretrained(
        model.base,
        dtype=dtype or accelerator.dtype(),
        attn_implementation="sdpa",  # the prefix-tree rows need a mask of any shape
        **options,
    )
    return (loaded if "device_map" in options else loaded.to(device)).eval()


def device_label(model: Any) -> str:
    """Where a loaded model runs, as a user reads it: the GPU's name, or the CPU's."""
    from raft import accelerator

    where = next(model.parameters()).device
    if where.type == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(where)})"
    return accelerator.device_name() if where.type == "cpu" else str(where)


def load_tokenizer(model: LocalModel) -> Any:
    """The adapter's tokenizer (saved beside it by ft:run), else the base model's."""
    from transformers import AutoTokenizer

    if model.adapter and (Path(model.adapter) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(model.adapter)
    gguf = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    return AutoTokenizer.from_pretrained(model.base, **gguf)
