"""`raft export --gguf`: a peft LoRA adapter as a llama.cpp GGUF adapter, plus a Modelfile.

The adapter tensors are renamed to llama.cpp's names with the `gguf` package's own name
map. llama.cpp stores the query and key projections of llama-family models with their
rows permuted for its rotary embedding, so LoRA's B matrices for those two are permuted the
same way; A matrices act on the unpermuted input and stay as they are.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from raft.backends import models
from raft.conversation import system_prompt
from raft.errors import UsageError
from raft.files import write_text
from raft.paths import Persona
from raft.target import target
from raft.training.registry import ModelRecord, find_record, save_record

# HF model_type -> (GGUF architecture, q/k rows permuted by llama.cpp's converter)
ARCHITECTURES = {
    "llama": ("llama", True),
    "mistral": ("llama", True),
    "qwen2": ("qwen2", False),
    "qwen3": ("qwen3", False),
}
PEFT_PREFIX = "base_model.model."


def permute_rows(weights: Any, n_head: int) -> Any:
    """llama.cpp's converter layout: each head's two rotary halves interleaved."""
    shape = weights.shape
    return (
        weights.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
        .swapaxes(1, 2)
        .reshape(shape)
    )


def adapter_tensors(adapter_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """GGUF name -> float32 array for every LoRA A and B matrix of the adapter."""
    import gguf
    from safetensors.numpy import load_file

    model_type = config.get("model_type", "")
    if model_type not in ARCHITECTURES:
        raise UsageError(
            f"export supports {', '.join(ARCHITECTURES)} models, not {model_type or 'unknown'!r}"
        )
    arch_name, permuted = ARCHITECTURES[model_type]
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name)
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    heads = {
        "q_proj": config["num_attention_heads"],
        "k_proj": config.get("num_key_value_heads") or config["num_attention_heads"],
    }
    out = {}
    for key, value in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
        module, _, kind = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        if kind not in ("A.weight", "B.weight"):
            raise UsageError(f"{adapter_dir}: unsupported adapter tensor {key} (LoRA only)")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise UsageError(f"{adapter_dir}: no llama.cpp name for {module}")
        projection = module.rsplit(".", 1)[-1]
        if kind == "B.weight" and permuted and projection in heads:
            value = permute_rows(value, heads[projection])
        suffix = "lora_a" if kind == "A.weight" else "lora_b"
        out[f"{target}.{suffix}"] = value.astype("float32")
    return out


def write_gguf_adapter(adapter_dir: Path, base_config: dict[str, Any], path: Path) -> int:
    """Write the GGUF adapter atomically; returns the number of tensors."""
    import gguf

    lora = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if lora.get("use_rslora") or lora.get("use_dora"):
        raise UsageError(f"{adapter_dir}: rsLoRA and DoRA adapters cannot be exported to GGUF")
    tensors = adapter_tensors(adapter_dir, base_config)
    arch_name = ARCHITECTURES[base_config["model_type"]][0]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        writer = gguf.GGUFWriter(tmp, arch_name)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(lora["lora_alpha"]))
        for name, value in tensors.items():
            writer.add_tensor(name, value)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(tensors)


def base_gguf(record: ModelRecord) -> Path | None:
    """The GGUF the adapter applies to, when the run trained the default SmolLM2."""
    return models.smollm2_gguf() if record.base_model == "local" else None


def modelfile(persona: Persona, record: ModelRecord, base: str) -> str:
    """An Ollama Modelfile: the base, the adapter, and the replica's system prompt."""
    name = record.spec.get("target") or target(persona).prompt_name
    system = system_prompt(name, "the interviewer", date.today().isoformat())
    return (
        f"# {name} replica, run {record.id} (raft export)\n"
        f"FROM {base}\n"
        "ADAPTER ./adapter.gguf\n"
        'PARAMETER stop "<|im_end|>"\n'
        f'SYSTEM """{system}"""\n'
    )


def export_gguf(persona: Persona, run: str | None) -> ModelRecord:
    """Export a local run's adapter; the paths are recorded in the registry."""
    record = find_record(persona, run, venue=None if run else "local")
    if record.venue != "local" or record.status != "succeeded":
        raise UsageError(f"{record.id} is a {record.status} {record.venue} run: nothing to export")
    adapter_dir = persona.root / record.model
    base_dir = Path(record.params["base_path"])
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise UsageError(f"{record.id}: no adapter at {adapter_dir}")
    if not (base_dir / "config.json").is_file():
        raise UsageError(f"{record.id}: base model folder {base_dir} is gone; re-run ft:run")
    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    out = adapter_dir.parent
    write_gguf_adapter(adapter_dir, config, out / "adapter.gguf")
    base = base_gguf(record)
    write_text(out / "Modelfile", modelfile(persona, record, str(base or base_dir)))
    record.exports = {
        "gguf": str((out / "adapter.gguf").relative_to(persona.root)),
        "modelfile": str((out / "Modelfile").relative_to(persona.root)),
    }
    if base:
        record.exports["base_gguf"] = str(base)
    save_record(persona, record)
    return record
