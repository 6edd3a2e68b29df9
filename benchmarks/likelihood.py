"""likelihood: the time `ratf score` takes for answer likelihood, six systems on the sample's
14 held-out items.

The six systems are the ablation's shape: the base SmolLM2 checkpoint without and with
memories, and two LoRA adapters on it, each without and with memories. The adapters are
freshly initialised, not trained (training is the train stage's business; scoring costs the
same), and registered as local records with the budget `raft ft:run` gives a CPU run (1024
SmolLM2 tokens, 512 of them kept for the answer). Items are the sample interview's real
exchanges and history, with three memories a question taken from the sample's essays, so no
LLM call is needed to build them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, SEED, Result

GOAL_SECONDS = 120
SAMPLE = REPO / "data" / "sample"
TARGET = "Hollis Penwarden"
MEMORIES = 3  # kept a question; the spec's k is 6, and about half are judged useful
CPU_BUDGET = 1024  # ft:run's --max-length default on a CPU


def essay_sentences() -> list[tuple[str, str]]:
    """(date, two sentences) from the sample's essays, as rephrased memories read."""
    out = []
    for path in sorted((SAMPLE / "essays").glob("*.md")):
        body = path.read_text(encoding="utf-8").split("---", 2)[-1]
        sentences = re.split(r"(?<=[.!?])\s+", " ".join(body.split()))
        for start in range(0, len(sentences) - 1, 2):
            out.append((path.name[:10], " ".join(sentences[start : start + 2])))
    return out


def build_items(quick: bool) -> list:
    """The held-out interview's exchanges as benchmark items, history as bench:setup
    builds it (each earlier exchange with the memories its slot showed)."""
    from raft.conversation import ConversationSpec, Exchange
    from raft.memories import Memory
    from raft.transcripts import load_interview
    from ratf.items import BenchItem

    interview = load_interview(next((SAMPLE / "benchmark").glob("*.json")), benchmark=True)
    rng = random.Random(SEED)
    pool = [s for s in essay_sentences() if s[0] < interview.date]
    made = {"spec": ConversationSpec(target=TARGET).to_row()}
    history: list[Exchange] = []
    items = []
    exchanges = interview.exchanges[:5] if quick else interview.exchanges
    for number, (question, answer) in enumerate(exchanges):
        memories = []
        for n, (day, text) in enumerate(rng.sample(pool, MEMORIES)):
            memory = Memory(f"essay:{number}:{n}", "essay", "An essay", "", day, text, 0.3)
            memory.rephrased, memory.useful = text, True
            memories.append(memory)
        items.append(
            BenchItem(
                id=f"{interview.id}#{number}",
                interview=interview.id,
                date=interview.date,
                interviewer=interview.interviewer,
                target=TARGET,
                index=number,
                question=question,
                answer=answer,
                history=list(history),
                memories=memories,
                kept=[m.chunk_id for m in memories],
                next_question="",
                made=made,
            )
        )
        history.append(Exchange(question, answer, memories))
    return items


def register_adapter(persona, record_id: str, base: Path, spec: dict, seed: int) -> None:
    """A freshly initialised LoRA adapter (r=16 on every linear layer, as ft:run makes
    them) with its tokenizer beside it, recorded as a finished local run."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from raft.training.registry import SUCCEEDED, ModelRecord, save_record

    torch.manual_seed(seed)
    folder = persona.models / record_id / "adapter"
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    save_record(
        persona,
        ModelRecord(
            id=record_id,
            venue="local",
            method="sft",
            base_model="local",
            status=SUCCEEDED,
            model=str(folder.relative_to(persona.root)),
            params={"base_path": str(base)},
            spec=spec,
            budget={
                "limit": CPU_BUDGET,
                "reserve": 512,
                "tokenizer": str(folder.relative_to(persona.root)),
            },
        ),
    )


def build_persona(root: Path, items: list) -> object:
    """A persona folder with the sample's training interviews and two adapters."""
    from raft.backends.models import smollm2_checkpoint
    from raft.paths import Persona

    persona = Persona("bench", root / "bench")
    persona.root.mkdir(parents=True)
    (persona.root / "persona.toml").write_text(f'name = "{TARGET}"\n')
    shutil.copytree(SAMPLE / "transcripts", persona.transcripts)
    base = smollm2_checkpoint()  # converted once per cache folder, before the clock starts
    for n, name in enumerate(("plain", "raft")):
        register_adapter(persona, f"sft-bench-{name}", base, items[0].made["spec"], SEED + n)
    return persona


def run(quick: bool) -> list[Result]:
    from raft.console import quiet_libraries
    from raft.transcripts import load_interviews
    from ratf.likelihood import score_likelihood, summarize_likelihood
    from ratf.scoring import shuffled_answers

    quiet_libraries()
    items = build_items(quick)
    replicas = {
        label: {"spec": model, "memories": memories}
        for label, model, memories in [
            ("base", "local", False),
            ("base+mem", "local", True),
            ("plain", "sft-bench-plain", False),
            ("plain+mem", "sft-bench-plain", True),
            ("raft-nomem", "sft-bench-raft", False),
            ("raft", "sft-bench-raft", True),
        ]
    }
    with tempfile.TemporaryDirectory(prefix="raft-bench-likelihood-") as folder:
        persona = build_persona(Path(folder), items)
        shuffled = shuffled_answers(items, load_interviews(persona.transcripts))
        load = os.getloadavg()[0]  # other work on the machine slows torch's threads badly
        start = time.perf_counter()
        results = score_likelihood(persona, items, replicas, shuffled)
        seconds = time.perf_counter() - start
    summary = summarize_likelihood(results, "base")["systems"]
    figures = ", ".join(
        f"{s} {v['bits_per_byte']['mean']:.3f} (shuffled {v['shuffled']['mean']:.3f})"
        for s, v in summary.items()
    )
    tokens = sum(v["tokens"] for v in summary.values())
    return [
        Result(
            stage="likelihood",
            measured=f"seconds, answer likelihood of {len(replicas)} systems × {len(items)} items",
            value=seconds,
            raw=None,
            ratio=None,
            goal=f"< {GOAL_SECONDS} s",
            met=seconds < GOAL_SECONDS,
            note=(
                f"`score_likelihood`, what `ratf score` runs, in this process: loading SmolLM2 "
                "(float32, transformers) once, putting each adapter on it and taking it off, "
                "and for every item the real and the shuffled answer after the replica's own "
                "prompt, reusing the KV cache of the prompt and of the previous item's. "
                "Systems: SmolLM2 base without and with memories (4096 cl100k-token budget), "
                f"and two freshly initialised, untrained LoRA adapters (r=16, all linear "
                f"layers) registered as local records with a CPU run's {CPU_BUDGET}-token "
                f"budget, each without and with memories ({MEMORIES} memories from the "
                f"sample's essays a question). {tokens:,} answer tokens scored. Bits/byte of "
                f"the real answer: {figures}. Load average when it started: {load:.1f} on "
                f"{os.cpu_count()} cores."
            ),
        )
    ]
