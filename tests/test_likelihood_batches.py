"""Answer likelihood at accelerator speed: (prompt, answer) pairs packed as prefix trees into
batches give each pair the numbers it gets scored alone by the model's own forward pass;
bf16 agrees with float32 on SmolLM2 within a stated tolerance; models with windowed
attention keep their window; and the throughput figure `scripts/gpucheck` shows."""

from __future__ import annotations

import math
import statistics

import pytest

from benchmarks.likelihood import SAMPLE, answer_tokens_per_second, build_items, main
from raft.conversation import ConversationSpec
from ratf.answer_scorer import AnswerScorer
from ratf.local_model import LocalModel, load_base, load_tokenizer
from ratf.prefix_tree import pack_rows

LENA = {"role": "system", "content": "You are Lena Marsh, a beekeeper, talking to Tom Reed."}
TOM = {
    "role": "system",
    "content": "Tom Reed hosts a radio show on city life; his guest today is Lena Marsh, who "
    "keeps bees on the roof of a laundrette.",
}
TURNS = [
    ("How did you start keeping bees on a roof?", "The laundrette owner let me put two hives up."),
    ("What is the worst month?", "May, without a doubt: swarm season. I chased one down a street."),
    ("And you bake as well?", "My sourdough starter is called Gerald and he is nine years old."),
]


def conversation_pairs(system: dict[str, str] = LENA) -> list[tuple[list[dict[str, str]], str]]:
    """An interview's items as `ratf score` pairs them: each prompt (the history so far and
    the question) with the real answer and with another one; plus a pair given twice."""
    pairs = []
    for n, (question, answer) in enumerate(TURNS):
        history = []
        for q, a in TURNS[:n]:
            history += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        prompt = [system, *history, {"role": "user", "content": question}]
        pairs += [(prompt, answer), (prompt, TURNS[(n + 1) % len(TURNS)][1])]
    return [*pairs, pairs[1]]


def alone(model, scorer: AnswerScorer, prompt, answer) -> float:
    """Nats of one pair by a plain forward pass: the model builds its own causal mask."""
    import torch
    import torch.nn.functional as F

    prompt_ids, answer_ids = scorer.prompt_ids(prompt), scorer.answer_ids(answer)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt_ids + answer_ids])).logits[0]
    predicted = logits[len(prompt_ids) - 1 : -1].float()
    return F.cross_entropy(predicted, torch.tensor(answer_ids), reduction="sum").item()


@pytest.fixture(scope="module")
def smollm2():
    from raft.backends.models import smollm2_checkpoint

    local = LocalModel(str(smollm2_checkpoint()))
    return local, load_base(local), load_tokenizer(local)


def test_a_pair_scores_the_same_whatever_else_shares_its_batch(smollm2):
    _, model, tokenizer = smollm2
    pairs = conversation_pairs() + conversation_pairs(TOM)[:4]  # two trees
    scorers = {
        # On a CPU: one sequence at a time, keeping the KV cache of the one before.
        "in order": AnswerScorer(model, tokenizer),
        # As on a GPU: both trees in one row.
        "one row": AnswerScorer(model, tokenizer, batched=True),
        # A row per tree, side by side in 32-token chunks with a KV cache, one padded.
        "two rows": AnswerScorer(model, tokenizer, batch_tokens=96, chunk=32, batched=True),
    }
    expected = [alone(model, scorers["in order"], prompt, answer) for prompt, answer in pairs]
    ran = {}
    for name, scorer in scorers.items():
        found = [x.nats for x in scorer.score_pairs(pairs)]
        ran[name] = scorer.positions
        assert found == pytest.approx(expected, abs=2e-4), name  # float32 rounding
    # Other company, another order.
    subset = [x.nats for x in scorers["two rows"].score_pairs(pairs[::-2])]
    assert subset == pytest.approx(expected[::-2], abs=2e-4)
    assert scorers["two rows"].padding > 0  # it did run rows of two lengths side by side
    # Each shared token is run once: the history, and each item's prompt for both answers.
    one_row = scorers["one row"]
    ids = [(one_row.prompt_ids(p), one_row.answer_ids(a)) for p, a in pairs]
    unpacked = sum(len(p) + len(a) for p, a in ids)
    assert ran["one row"] < 0.4 * unpacked and ran["in order"] < 0.4 * unpacked
    assert [len(r.scored) for r in pack_rows(ids, chunk=32)] == [7, 4]


@pytest.mark.parametrize("kind", ["qwen2", "mistral"])
def test_windowed_attention_keeps_its_window_in_packed_rows(smollm2, kind):
    """Qwen2 with windowed upper layers (a mask per kind of layer) and Mistral windowed in
    every layer, tiny and random, with a window shorter than the prompts."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig, Qwen2Config

    _, _, tokenizer = smollm2
    shape = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "sliding_window": 8,
    }
    if kind == "qwen2":
        config = Qwen2Config(**shape, use_sliding_window=True, max_window_layers=1)
    else:
        config = MistralConfig(**shape)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    pairs = conversation_pairs()
    batched = AnswerScorer(model, tokenizer, batch_tokens=64, chunk=32, batched=True)
    assert batched.window == 8 and batched.mixed == (kind == "qwen2")
    expected = [alone(model, batched, prompt, answer) for prompt, answer in pairs]
    assert [x.nats for x in batched.score_pairs(pairs)] == pytest.approx(expected, abs=2e-4)
    in_order = AnswerScorer(model, tokenizer)  # the model's own masks over a KV cache
    assert [x.nats for x in in_order.score_pairs(pairs)] == pytest.approx(expected, abs=2e-4)


# bf16 against float32 on the CPU, SmolLM2, the sample's first held-out items without
# memories (real and shuffled answers). Measured on all 14 items without and with memories
# (56 answers): |difference| at most 0.0043 bits/byte (mean |difference| 0.0014), mean
# difference 0.00000, the same real-vs-shuffled order for all 28 items (the closest pair
# 0.0068 bits/byte apart in float32). Allowed: per answer 0.01, the mean 0.005.
BF16_MAX = 0.01
BF16_MEAN = 0.005


def test_bf16_agrees_with_float32_within_the_stated_tolerance(smollm2):
    import torch

    from raft.transcripts import load_interviews
    from ratf.scoring import shuffled_answers

    local, model, tokenizer = smollm2
    items = build_items(quick=True)[:3]
    shuffled = shuffled_answers(items, load_interviews(SAMPLE / "transcripts"))
    budget = ConversationSpec(target=items[0].target).budget
    pairs = []
    for item in items:
        prompt = item.prompt([budget], memories=False)
        pairs += [(prompt, item.answer), (prompt, shuffled[item.id])]
    wide = AnswerScorer(model, tokenizer).score_pairs(pairs)
    half = load_base(local, dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    narrow = AnswerScorer(half, tokenizer).score_pairs(pairs)
    differences = [b.bits_per_byte - a.bits_per_byte for a, b in zip(wide, narrow, strict=True)]
    assert max(map(abs, differences)) < BF16_MAX, differences
    assert abs(statistics.mean(differences)) < BF16_MEAN, differences
    for n in range(0, len(pairs), 2):  # real vs shuffled ranked alike
        assert (wide[n].bits_per_byte < wide[n + 1].bits_per_byte) == (
            narrow[n].bits_per_byte < narrow[n + 1].bits_per_byte
        )


def test_throughput_is_scored_answer_tokens_a_second(tmp_path, capsys):
    """What `scripts/gpucheck` calls: a base model folder and chat pairs, no adapter."""
    import json

    from benchmarks.random_model import write_random_llama
    from benchmarks.train import write_samples

    folder = write_random_llama(tmp_path / "tiny", "tiny")
    rate, peak = answer_tokens_per_second(folder, conversation_pairs(), batch_tokens=256)
    assert rate > 0 and peak > 0
    write_samples(tmp_path / "persona", 6, 512)
    main(["throughput", str(folder), str(tmp_path / "persona/finetune/messages.jsonl"), "4"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["pairs"] == 8 and row["answer_tokens"] > 0  # 4 rows: real and shuffled
    assert row["device"].startswith("cpu") and row["dtype"] == "float32"
    assert 0 <= row["padding_fraction"] < 1 and math.isfinite(row["tokens_per_second"])
    assert row["positions"] < row["answer_tokens"] * 20


def test_an_adapter_scores_the_same_in_batched_rows_as_in_order(smollm2, tmp_path):
    """The accelerator's path through peft: a LoRA adapter (random, so it moves the
    numbers) put on the base as `ratf score` puts it, batched and in order."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    local, model, tokenizer = smollm2
    torch.manual_seed(0)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(local.base), config).save_pretrained(
        tmp_path / "adapter"
    )
    pairs = conversation_pairs()[:4]
    plain = [x.nats for x in AnswerScorer(model, tokenizer).score_pairs(pairs)]
    tuned = PeftModel.from_pretrained(model, tmp_path / "adapter", autocast_adapter_dtype=False)
    try:
        in_order = [x.nats for x in AnswerScorer(tuned, tokenizer).score_pairs(pairs)]
        rows = AnswerScorer(tuned, tokenizer, batch_tokens=64, chunk=32, batched=True)
        assert [x.nats for x in rows.score_pairs(pairs)] == pytest.approx(in_order, abs=2e-4)
    finally:
        tuned.unload()  # the module's base model, as it was
    assert in_order != pytest.approx(plain, abs=0.1)
