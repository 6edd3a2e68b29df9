"""`raft ft:run --backend local` and `raft export --gguf`: real LoRA training of SmolLM2 on
the tiny persona, on the CPU, with the adapter loaded back into llama.cpp."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from raft.backends.models import smollm2_gguf
from raft.paths import Persona
from raft.training.base import LoraSettings, resolve_base_model
from raft.training.registry import file_sha256
from raft.training.sft import build_sft_trainer
from tests.helpers import BIN, run_cli
from tests.tiny_persona import (
    INTERVIEWS,
    add_lora,
    finetune_persona,
    registry,
    write_finetune,
    write_tiny_persona,
)

ANSWER_Q = "What is the worst month for a beekeeper?"
ANSWER = INTERVIEWS["transcripts/2021-06-01-garden-radio.json"]["exchanges"][1][1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, extractive_lora):
    """The session's LoRA (a high learning rate, so that two steps of two or three samples a
    bin move the model measurably) in a persona of this module's own: DPO and export add to
    it."""
    data = tmp_path_factory.mktemp("lora") / "data"
    add_lora(write_tiny_persona(data / "lena"), extractive_lora)
    return data / "lena", {"RAFT_DATA_DIR": str(data)}, extractive_lora.result


def test_sft_run_is_recorded_in_the_registry(trained):
    persona, env, result = trained
    [record] = registry(persona)
    assert result.stdout == f"{record['id']}: succeeded -> models/{record['id']}/adapter\n"
    assert (record["venue"], record["method"], record["base_model"]) == ("local", "sft", "local")
    assert record["metrics"]["steps"] == 2 and record["metrics"]["samples"] == 5
    assert record["metrics"]["eval_loss"] > 0 and record["metrics"]["base_eval_loss"] > 0
    assert "validation loss" in result.stderr
    train = persona / "finetune" / "messages.jsonl"
    assert record["files"]["train"] == {
        "path": "finetune/messages.jsonl",
        "sha256": file_sha256(train),
    }
    listing = run_cli("raft", "models", "lena", env=env)
    assert listing.returncode == 0 and record["id"] in listing.stdout
    assert "succeeded" in listing.stdout

    # What the run cost: samples packed into 1024-token bins, no padding, on the CPU.
    cost = record["cost"]
    assert cost["device"].startswith("cpu") and cost["dtype"] == "float32"
    assert (cost["world_size"], cost["batching"], cost["batch_tokens"]) == (1, "packed", 1024)
    assert cost["padding_fraction"] == 0.0 and cost["tokens"] > 0
    assert cost["tokens_per_second"] > 0 and cost["seconds_per_step"] > 0
    assert cost["peak_memory_gb"] > 0
    assert cost["flops_per_token"] == 6 * smollm2_parameters(record["params"]["base_path"])
    assert cost["mfu"] is None and cost["peak_tflops"] is None  # no known peak for a CPU
    assert cost["checkpointing"] == "off" and cost["checkpointing_reason"].startswith("auto:")
    line = listing.stdout.splitlines()[1]
    assert line.startswith("    cpu") and "padding 0.0%" in line and "tok/s" in line
    assert "FutureWarning" not in result.stderr and "deprecated" not in result.stderr


def smollm2_parameters(base: str) -> int:
    """Parameters in the checkpoint's weights file (the tied output layer is not stored)."""
    import math

    from safetensors import safe_open

    with safe_open(str(Path(base) / "model.safetensors"), "pt") as weights:
        return sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys())  # noqa: SIM118


def test_lora_weights_changed_and_base_weights_did_not(trained):
    from safetensors.numpy import load_file

    from raft.backends.models import fingerprint

    persona, _, _ = trained
    [record] = registry(persona)
    tensors = load_file(str(persona / record["model"] / "adapter_model.safetensors"))
    lora_b = [v for k, v in tensors.items() if "lora_B" in k]
    assert len(lora_b) == 7 * 30  # every linear layer of every block
    assert all(abs(v).max() > 0 for v in lora_b)  # peft starts B at zero
    base = Path(record["params"]["base_path"]) / "model.safetensors"
    fingerprint.cache_clear()
    assert record["params"]["base_id"].endswith(fingerprint(base))


def test_loss_covers_only_the_final_answer(tmp_path):
    persona_dir, _ = finetune_persona(tmp_path)
    persona = Persona("lena", persona_dir)
    trainer = build_sft_trainer(
        persona, LoraSettings(max_length=1024), resolve_base_model(None), tmp_path / "out"
    )
    tokenizer = trainer.processing_class
    rows = [json.loads(line) for line in (persona_dir / "finetune" / "messages.jsonl").open()]
    index = next(i for i, row in enumerate(rows) if len(row["messages"]) > 3)
    sample = rows[index]["messages"]
    labels, ids = packed_sample(trainer, tokenizer.apply_chat_template(sample, tokenize=False))
    trained_positions = (labels != -100).nonzero().flatten().tolist()
    # One contiguous run at the very end: the final answer and its end-of-turn marker.
    assert trained_positions == list(range(len(ids) - len(trained_positions), len(ids)))
    assert tokenizer.decode(labels[labels != -100]) == sample[-1]["content"] + "<|im_end|>\n"
    masked = tokenizer.decode(ids[: trained_positions[0]])
    assert sample[1]["content"] in masked and sample[2]["content"] in masked  # history
    assert "[Memories from your own earlier writing]" in masked
    assert sample[2]["content"] not in tokenizer.decode(labels[labels != -100])


def packed_sample(trainer, text: str):
    """(labels, input ids) of the sample rendered as `text`, as the collator hands it to the
    model: cut from its packed, padding-free bin where the position ids restart."""
    tokenizer = trainer.processing_class
    for row in trainer.train_dataset:
        batch = trainer.data_collator([row])
        positions = batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        for start, end in zip(starts, starts[1:], strict=False):
            ids = batch["input_ids"][0, start:end]
            if tokenizer.decode(ids) == text:
                return batch["labels"][0, start:end], ids
    raise AssertionError("the sample is in no bin whole")


def stop_at_checkpoint(
    args: list[str], env: dict[str, str], persona: Path, step: int, how: signal.Signals
) -> tuple[int, str]:
    """Start `raft ARGS`, send it `how` once checkpoint-STEP is complete; (status, stderr)."""
    process = subprocess.Popen(
        [str(BIN / "raft"), *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    pattern = f"sft-*/checkpoints/checkpoint-{step}/trainer_state.json"
    checkpoint = None
    deadline = time.monotonic() + 300
    while checkpoint is None and process.poll() is None and time.monotonic() < deadline:
        found = list((persona / "models").glob(pattern))
        checkpoint = found[0] if found else time.sleep(0.05)
    process.send_signal(how)
    _, stderr = process.communicate(timeout=120)
    assert checkpoint is not None, f"no checkpoint-{step} before the run ended: {stderr}"
    return process.returncode, stderr


def test_resume_after_kill_or_sigterm_continues_from_the_checkpoint(tmp_path, tiny_model):
    persona, env = finetune_persona(tmp_path)
    # Padded batches of 4, recomputed activations and an MFU against a stated 1 TFLOPS peak:
    # options a resumed run takes back from its record.
    args = ["ft:run", "lena", "--base-model", str(tiny_model), "--max-steps", "3"]
    args += ["--save-steps", "1", "--batch-size", "4", "--checkpointing", "on"]
    args += ["--peak-tflops", "1"]
    status, _ = stop_at_checkpoint(args, env, persona, 1, signal.SIGKILL)
    [record] = registry(persona)
    assert status == -signal.SIGKILL and record["status"] == "running"  # nothing could update it

    # SIGTERM (a scheduler's stop) is recorded, like Ctrl-C, with the way to go on.
    status, stderr = stop_at_checkpoint([*args, "--resume"], env, persona, 2, signal.SIGTERM)
    assert f"resuming {record['id']} from checkpoint-1" in stderr
    assert status == 128 + signal.SIGTERM, stderr
    [stopped] = registry(persona)
    assert (stopped["id"], stopped["status"], stopped["error"]) == (
        record["id"],
        "failed",
        "terminated",
    )
    assert "continue with `raft ft:run lena --method sft --resume`" in stderr
    assert "raft: terminated" in stderr and "Traceback" not in stderr

    result = run_cli("raft", *args, "--resume", env=env)
    assert result.returncode == 0, result.stderr
    assert f"resuming {record['id']} from checkpoint-2" in result.stderr
    [done] = registry(persona)
    assert (done["id"], done["status"], done["metrics"]["steps"]) == (record["id"], "succeeded", 3)
    assert (persona / done["model"] / "adapter_model.safetensors").is_file()
    cost = done["cost"]
    assert (cost["batching"], cost["batch_size"], cost["checkpointing"]) == ("padded", 4, "on")
    assert cost["checkpointing_reason"] == "--checkpointing on"
    assert cost["padding_fraction"] > 0  # samples of different lengths in one tensor
    expected = cost["flops_per_token"] * cost["tokens_per_second"] / 1e12
    assert cost["peak_tflops"] == 1
    assert cost["mfu"] == pytest.approx(expected, rel=0.02, abs=1e-4)


def test_dpo_starts_from_the_sft_adapter_and_caches_base_replies(trained):
    from raft.backends.cache import Cache

    persona, env, _ = trained
    [sft] = registry(persona)

    def cached_replies() -> int:
        return Cache(persona / "cache.sqlite").count("chat")

    result = run_cli("raft", "ft:run", "lena", "--method", "dpo", "--max-steps", "2", env=env)
    assert result.returncode == 0, result.stderr
    assert f"DPO starts from the SFT adapter {sft['id']}" in result.stderr
    dpo = registry(persona)[-1]
    assert (dpo["method"], dpo["status"], dpo["params"]["start_adapter"]) == (
        "dpo",
        "succeeded",
        sft["id"],
    )
    assert dpo["metrics"]["steps"] == 2
    # DPO pads its pairs (TRL 1.16 has no padding-free DPO): one pair per step on a CPU.
    assert (dpo["cost"]["batching"], dpo["cost"]["batch_size"]) == ("padded", 1)
    assert dpo["cost"]["tokens"] > 0
    replies = cached_replies()
    assert replies == 6  # one base-model reply per training and validation sample

    again = run_cli("raft", "ft:run", "lena", "--method", "dpo", "--max-steps", "1", env=env)
    assert again.returncode == 0, again.stderr
    assert cached_replies() == replies  # the rejected replies came from the cache


def test_export_writes_a_gguf_adapter_that_llama_cpp_applies(trained):
    import gguf

    persona, env, _ = trained
    [record] = [r for r in registry(persona) if r["method"] == "sft"]
    result = run_cli("raft", "export", "lena", "--run", record["id"], "--gguf", env=env)
    assert result.returncode == 0, result.stderr
    out = persona / "models" / record["id"]
    assert f"gguf: {out / 'adapter.gguf'}" in result.stdout

    reader = gguf.GGUFReader(out / "adapter.gguf")
    fields = {name: reader.fields[name].contents() for name in reader.fields}
    assert fields["general.type"] == "adapter" and fields["adapter.type"] == "lora"
    assert fields["general.architecture"] == "llama"
    assert fields["adapter.lora.alpha"] == 32.0
    assert len(reader.tensors) == 2 * 7 * 30
    assert {t.name for t in reader.tensors} >= {
        "blk.0.attn_q.weight.lora_a",
        "blk.29.ffn_down.weight.lora_b",
    }

    modelfile = (out / "Modelfile").read_text()
    assert f"FROM {smollm2_gguf()}\nADAPTER ./adapter.gguf\n" in modelfile
    assert "You are Lena Marsh." in modelfile
    [after] = [r for r in registry(persona) if r["id"] == record["id"]]
    assert after["exports"]["gguf"] == f"models/{record['id']}/adapter.gguf"


def answer_logprob_llama(lora: Path | None) -> tuple[str, float]:
    """Greedy reply to a training question, and the mean log-probability of its real answer."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(smollm2_gguf()),
        lora_path=str(lora) if lora else None,
        n_ctx=1024,
        logits_all=True,
        verbose=False,
    )
    messages = [{"role": "user", "content": ANSWER_Q}]
    reply = llm.create_chat_completion(messages=messages, temperature=0, max_tokens=30, seed=0)
    prompt = llm.tokenize(prompt_text().encode(), add_bos=False, special=True)
    answer = llm.tokenize(ANSWER.encode(), add_bos=False, special=False)
    llm.reset()
    llm.eval(prompt + answer)
    scores = np.array(llm.scores[: len(prompt) + len(answer)], dtype=np.float64)
    logprobs = scores - scores.max(axis=1, keepdims=True)
    logprobs -= np.log(np.exp(logprobs).sum(axis=1, keepdims=True))
    total = sum(logprobs[len(prompt) + i - 1, t] for i, t in enumerate(answer))
    return reply["choices"][0]["message"]["content"], total / len(answer)


def answer_logprob_hf(base: str, adapter: Path | None) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    if adapter:
        model = PeftModel.from_pretrained(model, str(adapter))
    prompt = tokenizer(prompt_text(), add_special_tokens=False)["input_ids"]
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
    return sum(logits[len(prompt) + i - 1, t].item() for i, t in enumerate(answer)) / len(answer)


def prompt_text() -> str:
    return (
        "<|im_start|>system\nYou are Lena Marsh.<|im_end|>\n"
        f"<|im_start|>user\n{ANSWER_Q}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_exported_adapter_changes_llama_cpp_as_training_changed_the_model(trained):
    persona, env, _ = trained
    [record] = [r for r in registry(persona) if r["method"] == "sft"]
    adapter_gguf = persona / "models" / record["id"] / "adapter.gguf"
    if not adapter_gguf.is_file():
        assert run_cli("raft", "export", "lena", "--gguf", env=env).returncode == 0
    base_reply, base_lp = answer_logprob_llama(None)
    tuned_reply, tuned_lp = answer_logprob_llama(adapter_gguf)
    assert tuned_reply != base_reply  # same prompt, same seed, greedy
    # The adapter in llama.cpp moves the trained answer's likelihood as it does in peft:
    # a wrongly mapped or unpermuted tensor would not.
    base = record["params"]["base_path"]
    hf_gain = answer_logprob_hf(base, persona / record["model"]) - answer_logprob_hf(base, None)
    gguf_gain = tuned_lp - base_lp
    assert hf_gain > 0.2
    assert abs(gguf_gain - hf_gain) < 0.25 * hf_gain, (gguf_gain, hf_gain)


def test_ft_run_errors_are_one_line_with_exit_2(data_dir):
    write_tiny_persona(data_dir / "lena")
    missing = run_cli("raft", "ft:run", "lena")
    assert missing.returncode == 2 and "run `raft ft:gen lena` first" in missing.stderr
    write_finetune(data_dir / "lena")
    gguf_base = run_cli("raft", "ft:run", "lena", "--base-model", str(smollm2_gguf()))
    assert gguf_base.returncode == 2 and "a GGUF file cannot be trained" in gguf_base.stderr
    nothing = run_cli("raft", "ft:run", "lena", "--resume")
    assert nothing.returncode == 2 and "nothing to resume" in nothing.stderr
    mixed = run_cli("raft", "ft:run", "lena", "--backend", "openai", "--max-steps", "3")
    assert mixed.returncode == 2 and "--max-steps applies to --backend local only" in mixed.stderr
    batching = [
        (["--batch-tokens", "0"], "--batch-tokens must be at least 1"),
        (["--peak-tflops", "0"], "--peak-tflops must be above 0"),
        (["--backend", "openai", "--checkpointing", "on"], "--checkpointing applies to --backend"),
        (["--batch-tokens", "512"], "--batch-tokens 512 is below --max-length 1024"),
        (["--batch-tokens", "2048", "--batch-size", "2"], "not both"),
        (["--method", "dpo", "--batch-tokens", "2048"], "--batch-tokens applies to --method sft"),
    ]
    flags = []
    for args, message in batching:
        flags.append(run_cli("raft", "ft:run", "lena", *args))
        assert flags[-1].returncode == 2 and message in flags[-1].stderr, flags[-1].stderr
    no_model = run_cli("raft", "export", "lena", "--gguf")
    assert no_model.returncode == 2 and "no trained local model" in no_model.stderr
    for result in (missing, gguf_base, nothing, mixed, no_model, *flags):
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
