"""Answer likelihood (`ratf score`): bits per byte of the real answer under each local
replica, after exactly the prompt it was sent, against a shuffled answer; remote replicas
are n/a. The model is the real SmolLM2, as transformers loads it from the shipped GGUF."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from raft.conversation import ConversationSpec, Exchange
from raft.paths import Persona
from raft.training.registry import FAILED, SUCCEEDED, ModelRecord, save_record
from raft.transcripts import Interview
from ratf.answer_scorer import AnswerScorer
from ratf.items import BenchItem
from ratf.likelihood import NO_LOGPROBS, score_likelihood
from ratf.local_model import LocalModel, load_base, load_tokenizer
from ratf.scoring import control_replies, shuffled_answers
from tests.helpers import run_cli

TARGET = "Lena Marsh"
SPEC = ConversationSpec(target=TARGET)
QUESTION = [
    {"role": "system", "content": f"You are {TARGET}, a beekeeper, talking to Tom Reed."},
    {"role": "user", "content": "What is the worst month for a beekeeper?"},
]
ANSWER = "May, without a doubt: swarm season. I have chased half a colony down the street."
OTHER = "My sourdough starter is called Gerald and he is nine years old."


@pytest.fixture(scope="module")
def smollm2():
    from raft.backends.models import smollm2_checkpoint

    local = LocalModel(str(smollm2_checkpoint()))
    return load_base(local), load_tokenizer(local)


def scorer(smollm2) -> AnswerScorer:
    return AnswerScorer(*smollm2)


def score(smollm2, prompt, answers):
    import torch

    with torch.inference_mode():
        return scorer(smollm2).score(prompt, answers)


def item(interview: str, index: int, pairs: list[tuple[str, str]]) -> BenchItem:
    """Exchange `index` of an interview made of `pairs`, with the real history before it."""
    question, answer = pairs[index]
    return BenchItem(
        id=f"{interview}#{index}",
        interview=interview,
        date="2023-01-10",
        interviewer="Tom Reed",
        target=TARGET,
        index=index,
        question=question,
        answer=answer,
        history=[Exchange(q, a) for q, a in pairs[:index]],
        memories=[],
        kept=[],
        next_question=pairs[index + 1][0] if index + 1 < len(pairs) else "",
        made={"spec": SPEC.to_row()},
    )


def interview_items(interview: str, pairs: list[tuple[str, str]]) -> list[BenchItem]:
    return [item(interview, n, pairs) for n in range(len(pairs))]


PAIRS = [
    ("How did you start keeping bees on a roof?", "The laundrette owner let me put two hives up."),
    ("What is the worst month for a beekeeper?", ANSWER),
    ("And you bake as well?", OTHER),
]


def test_a_model_finds_its_own_greedy_reply_likelier_than_another_answer(smollm2):
    import torch

    model, tokenizer = smollm2
    ids = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    with torch.inference_mode():
        out = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)
    own = tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True).strip()
    assert own
    other, greedy = score(smollm2, QUESTION, [ANSWER, own])
    assert greedy.bits_per_byte < other.bits_per_byte / 2


def test_identical_prompts_give_identical_numbers_and_sharing_changes_only_rounding(smollm2):
    first = score(smollm2, QUESTION, [OTHER, ANSWER])
    assert score(smollm2, QUESTION, [OTHER, ANSWER]) == first
    # Consecutive items scored together run the prompt they share (and the answer an item
    # scores, which the next prompt repeats) once: the numbers are those of each alone.
    items = interview_items("talk", PAIRS)
    together = scorer(smollm2).score_pairs([(i.prompt([SPEC.budget]), i.answer) for i in items])
    alone = [score(smollm2, i.prompt([SPEC.budget]), [i.answer])[0] for i in items]
    for a, b in zip(together, alone, strict=True):
        assert (a.tokens, a.n_bytes) == (b.tokens, b.n_bytes)
        assert a.bits_per_byte == pytest.approx(b.bits_per_byte, abs=1e-4)


def test_only_the_answer_tokens_are_scored_per_utf8_byte(smollm2):
    _, tokenizer = smollm2
    answer = "Je répare tout — même les théières fêlées."
    (found,) = score(smollm2, QUESTION, [answer])
    assert found.tokens == len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    assert found.n_bytes == len(answer.encode("utf-8")) > len(answer)
    assert found.bits_per_byte == pytest.approx(found.nats / found.n_bytes / math.log(2))
    assert found.nats_per_token == pytest.approx(found.nats / found.tokens)
    other_prompt = [QUESTION[0], {"role": "user", "content": "Do you speak French at home?"}]
    (moved,) = score(smollm2, other_prompt, [answer])
    assert moved.tokens == found.tokens and moved.nats != pytest.approx(found.nats)


def test_the_shuffled_answer_is_never_one_the_history_shows():
    repeated = [*PAIRS, ("Say that again?", PAIRS[0][1])]  # the author repeats an answer
    items = interview_items("a-talk", repeated) + interview_items("b-talk", PAIRS[:2])
    training = [
        Interview(Path("old.json"), "Tom Reed", TARGET, "2021-06-01", "", (("Q?", "Old answer."),))
    ]
    shuffled = shuffled_answers(items, training)
    for i in items:
        visible = {i.answer} | {h.answer for h in i.history}
        assert shuffled[i.id] and shuffled[i.id] not in visible, i.id
    assert shuffled["a-talk#0"] == ANSWER  # the next answer, when the item has one
    assert shuffled["b-talk#1"] == OTHER  # last item: another held-out interview's
    # The later answer repeats one the history shows, as do the other interview's first two:
    # the newest training interview's last answer is left.
    assert shuffled["a-talk#2"] == "Old answer."
    alone = shuffled_answers(interview_items("b-talk", PAIRS[:2]), training)
    assert alone["b-talk#1"] == "Old answer."  # else the newest training interview's last
    assert control_replies(items, training)["shuffled"] == shuffled  # one rule for both


def test_local_adapters_are_scored_on_their_base_and_remote_models_are_not(tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from raft.backends.models import smollm2_checkpoint

    persona = Persona("lena", tmp_path / "lena")
    base = smollm2_checkpoint()
    for name, init in (("zero", True), ("random", False)):
        torch.manual_seed(0)
        folder = persona.models / name / "adapter"
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=init)
        get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(folder)
        save_record(
            persona,
            ModelRecord(
                id=name,
                venue="local",
                method="sft",
                base_model="local",
                status=SUCCEEDED,
                model=f"models/{name}/adapter",
                params={"base_path": str(base)},
                spec=SPEC.to_row(),
            ),
        )
    save_record(
        persona,
        ModelRecord(id="broken", venue="local", method="sft", base_model="local", status=FAILED),
    )
    save_record(
        persona,
        ModelRecord(id="ft-oai", venue="openai", method="sft", base_model="gpt", status=SUCCEEDED),
    )
    items = interview_items("talk", PAIRS[:2])
    replicas = {
        label: {"spec": spec, "memories": False}
        for label, spec in [
            ("base", "local"),
            ("zero", "zero"),
            ("random", "random"),
            ("broken", "broken"),
            ("oai", "ft-oai"),
            ("remote", "openai:smollm2@http://127.0.0.1:9/v1"),
        ]
    }
    found = score_likelihood(persona, items, replicas, {"talk#0": OTHER, "talk#1": OTHER})
    assert list(found) == list(replicas)
    # LoRA starts with B = 0: an untrained adapter is its base, number for number.
    assert found["zero"].items == found["base"].items and len(found["base"].items) == 2
    assert found["random"].items[0].real != found["base"].items[0].real
    assert found["oai"].reason == found["remote"].reason == NO_LOGPROBS
    assert "broken is failed" in found["broken"].reason
    assert not found["remote"].items
    # Where each was scored: on this machine's CPU (no GPU here), in float32.
    assert {(found[s].device[:5], found[s].dtype) for s in ("base", "zero", "random")} == {
        ("cpu (", "float32")
    }
    assert found["oai"].device == ""


def test_ratf_score_shows_bits_per_byte_and_na_for_a_remote_replica(llama_server, tmp_path):
    from raft.files import write_jsonl
    from tests.tiny_persona import INTERVIEWS, write_tiny_persona

    data = tmp_path / "data"
    root = write_tiny_persona(data / "lena")
    # The items bench:setup would write, without its memories: no store or LLM call needed.
    held_out = INTERVIEWS["benchmark/2023-01-10-held-out-podcast.json"]["exchanges"]
    items = interview_items("2023-01-10-held-out-podcast", [tuple(pair) for pair in held_out])
    write_jsonl(root / "bench" / "items.jsonl", [i.to_row() for i in items])
    env = {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(data / "no-keys.toml")}
    replicas = ["--replica", "base=local,memories=off", "--replica", "base+mem=local,memories=on"]
    replicas += ["--replica", f"remote=openai:smollm2@{llama_server},memories=off"]
    run = run_cli("ratf", "run", "lena", *replicas, "--max-tokens", "8", env=env)
    assert run.returncode == 0, run.stderr
    scored = run_cli("ratf", "score", "lena", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "bits/byte ↓" in scored.stdout
    remote_row = next(line for line in scored.stdout.splitlines() if line.startswith("│ remote"))
    assert "n/a" in remote_row
    assert NO_LOGPROBS in " ".join(scored.stdout.split())
    folder = next((data / "lena" / "ratf" / "runs").iterdir())
    likelihood = json.loads((folder / "summary.json").read_text())["likelihood"]
    base = likelihood["systems"]["base"]
    assert 0 < base["bits_per_byte"]["mean"] < 10 and base["gap"]["n"] == 2
    assert base["device"].startswith("cpu (") and base["dtype"] == "float32"
    assert f"bits/byte scored on {base['device']}, float32" in " ".join(scored.stdout.split())
    assert likelihood["systems"]["remote"] == {"n/a": NO_LOGPROBS}
    # Items written without oracle memories: no ceiling, and one line saying how to get it.
    assert "base+oracle" not in likelihood["systems"] and likelihood["gap_closed"] == {}
    assert scored.stderr.count("re-run `raft bench:setup lena`") == 1
    assert "ceiling" not in scored.stdout
    rows = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
    metrics = {(r["metric"], r["system"]) for r in rows}
    assert {
        (m, "base") for m in ("bits_per_byte", "bits_per_byte_shuffled", "nats_per_token")
    } <= metrics
    assert not any(r["system"] == "remote" and r["metric"].startswith("bits") for r in rows)

    skipped = run_cli("ratf", "score", "lena", "--no-likelihood", env=env)
    assert skipped.returncode == 0, skipped.stderr
    assert "bits/byte ↓" not in skipped.stdout and "likelihood: skipped" in skipped.stdout
    summary = json.loads((folder / "summary.json").read_text())
    assert "skipped" in summary["likelihood"]
