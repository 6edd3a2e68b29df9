"""likelihood: the time `ratf score` takes for answer likelihood, six systems on the sample's
14 held-out items.

The six systems are the ablation's shape: the base SmolLM2 checkpoint without and with
memories, and two LoRA adapters on it, each without and with memories. The adapters are
freshly initialised, not trained (training is the train stage's business; scoring costs the
same), and registered as local records with the budget `raft ft:run` gives a CPU run (1024
SmolLM2 tokens, 512 of them kept for the answer). Items are the sample interview's real
exchanges and history, with three memories a question taken from the sample's essays, so no
LLM call is needed to build them.

It also measures throughput, scored answer tokens a second, which `scripts/gpucheck` shows:
`python -m benchmarks.likelihood throughput MODEL_FOLDER [MESSAGES_JSONL N]` scores, with a
base model folder (no adapter), the sample interview's items as `ratf score` sends them
(`--copies` of it, each a distinct interview), or the first N rows of a TRL messages file
(each row's last answer and, as the shuffled control, the next row's), and prints one JSON
line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

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
    from raft.memory import Memory
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


# -- Throughput ---------------------------------------------------------------------------


@dataclass
class Throughput:
    """How fast one model scored a list of (prompt, answer) pairs."""

    pairs: int
    answer_tokens: int  # scored: every pair's answer tokens
    positions: int  # row positions run (a shared prefix once), padding included
    padding_fraction: float  # of those positions
    seconds: float  # packing, forward passes and log-probabilities; tokenizing not counted
    tokenize_seconds: float
    tokens_per_second: float  # answer_tokens / seconds
    peak_memory_bytes: int  # accelerator memory (the process's RSS on a CPU)
    device: str
    dtype: str
    batch_tokens: int

    def row(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"peak_memory_gb": self.peak_memory_bytes / 1e9}


def measure_throughput(
    model_folder: Path | str,
    pairs: list[tuple[list[dict[str, str]], str]],
    batch_tokens: int | None = None,
    dtype: Any = None,
) -> Throughput:
    """Score `pairs` (chat messages, answer) with the base model in `model_folder` on the
    accelerator in its dtype (or `dtype`), after a warm-up on a few of them."""
    from raft import accelerator
    from ratf.answer_scorer import AnswerScorer
    from ratf.local_model import LocalModel, device_label, load_base, load_tokenizer

    local = LocalModel(str(model_folder))
    model = load_base(local, dtype)
    scorer = AnswerScorer(model, load_tokenizer(local), batch_tokens)
    start = time.perf_counter()
    ids = scorer.pair_ids(pairs)
    tokenize = time.perf_counter() - start
    # Kernels chosen and memory pools grown before the clock, on batches of the same shapes.
    scorer.score_ids(ids[: max(4, len(ids) // 4)])
    scorer.positions = scorer.padding = 0
    accelerator.reset_peak_memory()
    start = time.perf_counter()
    scorer.score_ids(ids)  # ends by copying the sums to the host: the device is done
    seconds = time.perf_counter() - start
    answer_tokens = sum(len(answer) for _, answer in ids)
    return Throughput(
        pairs=len(pairs),
        answer_tokens=answer_tokens,
        positions=scorer.positions,
        padding_fraction=scorer.padding / max(scorer.positions, 1),
        seconds=seconds,
        tokenize_seconds=tokenize,
        tokens_per_second=answer_tokens / seconds,
        peak_memory_bytes=accelerator.peak_memory_bytes(),
        device=device_label(model),
        dtype=accelerator.dtype_name(next(model.parameters()).dtype),
        batch_tokens=scorer.batch_tokens,
    )


def answer_tokens_per_second(
    model_folder: Path | str,
    pairs: list[tuple[list[dict[str, str]], str]],
    batch_tokens: int | None = None,
) -> tuple[float, int]:
    """(scored answer tokens a second, peak accelerator memory in bytes) for `pairs`."""
    found = measure_throughput(model_folder, pairs, batch_tokens)
    return found.tokens_per_second, found.peak_memory_bytes


def sample_pairs(copies: int = 1) -> list[tuple[list[dict[str, str]], str]]:
    """What `ratf score` scores for a base model without and with memories on the sample's
    held-out interview: each item's prompt with the real and with the shuffled answer.
    Each copy is dated a day later, so it is a distinct interview that shares no prompt
    with the others beyond the system prompt's first words."""
    from raft.transcripts import load_interviews
    from ratf.scoring import shuffled_answers

    items = build_items(quick=False)
    shuffled = shuffled_answers(items, load_interviews(SAMPLE / "transcripts"))
    budgets = [items[0].spec.budget]
    pairs = []
    for copy in range(copies):
        day = (date.fromisoformat(items[0].date) + timedelta(days=copy)).isoformat()
        for memories in (False, True):
            for item in items:
                prompt = dataclasses.replace(item, date=day).prompt(budgets, memories)
                pairs += [(prompt, item.answer), (prompt, shuffled[item.id])]
    return pairs


def messages_pairs(path: Path, n: int) -> list[tuple[list[dict[str, str]], str]]:
    """The first `n` rows of a TRL messages file: each row's prompt with its own last
    answer and with the next row's (the shuffled control, as `ratf score` pairs them)."""
    rows = [json.loads(line)["messages"] for line in path.read_text().splitlines() if line]
    rows = rows[: n + 1]
    if len(rows) < 2 or any(row[-1]["role"] != "assistant" for row in rows):
        raise SystemExit(f"{path}: needs 2 or more rows that end with the assistant's answer")
    pairs = []
    nexts = rows[1:] + rows[:1]  # the last row of a short file takes the first's answer
    for row, following in list(zip(rows, nexts, strict=True))[:n]:
        prompt = row[:-1]
        pairs += [(prompt, row[-1]["content"]), (prompt, following[-1]["content"])]
    return pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.likelihood", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    throughput = commands.add_parser("throughput", help="scored answer tokens a second")
    throughput.add_argument("model", type=Path, help="a base model folder (safetensors)")
    throughput.add_argument("messages", type=Path, nargs="?", help="a TRL messages file")
    throughput.add_argument("n", type=int, nargs="?", default=64, help="its rows to score")
    throughput.add_argument("--copies", type=int, default=8, help="of the sample interview")
    throughput.add_argument("--batch-tokens", type=int, help="tokens per forward pass")
    throughput.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], help="else the device's own"
    )
    args = parser.parse_args(argv)
    from raft.console import quiet_libraries

    quiet_libraries()
    if args.messages:
        pairs, workload = messages_pairs(args.messages, args.n), f"{args.messages.name}"
    else:
        pairs, workload = sample_pairs(args.copies), f"sample interview x {args.copies}"
    import torch

    dtype = getattr(torch, args.dtype) if args.dtype else None
    found = measure_throughput(args.model, pairs, args.batch_tokens, dtype)
    print(json.dumps(found.row() | {"workload": workload}))


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
    # Scored: the real and the shuffled answer of every item, for every system.
    scored = sum(i.real.tokens + i.shuffled.tokens for r in results.values() for i in r.items)
    where = next(iter(summary.values()))
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
                f"({where['dtype']}, transformers, {where['device']}) once, putting each "
                "adapter on it and taking it off, and for every item the real and the "
                "shuffled answer after the replica's own prompt, each shared prefix run once. "
                "Systems: SmolLM2 base without and with memories (4096 cl100k-token budget), "
                f"and two freshly initialised, untrained LoRA adapters (r=16, all linear "
                f"layers) registered as local records with a CPU run's {CPU_BUDGET}-token "
                f"budget, each without and with memories ({MEMORIES} memories from the "
                f"sample's essays a question). {tokens:,} answer tokens scored. Bits/byte of "
                f"the real answer: {figures}. Load average when it started: {load:.1f} on "
                f"{os.cpu_count()} cores."
            ),
        ),
        Result(
            stage="likelihood",
            measured="scored answer tokens/s (real and shuffled answers, loading included)",
            value=scored / seconds,
            raw=None,
            ratio=None,
            goal=">= 50,000 for a ~1B model on a GPU",
            met=None,  # judged by scripts/gpucheck, on a GPU
            note=(
                f"the same run: {scored:,} answer tokens in {seconds:.1f} s on "
                f"{where['device']}, {where['dtype']}. Each shared prefix is run once (an "
                "item's prompt for both its answers, an interview's history for all its "
                "items): on a CPU one sequence at a time in sorted order, keeping the KV "
                "cache of the one before; on a GPU as prefix-tree rows, many to a forward "
                "pass. The GPU figure comes from `scripts/gpucheck`."
            ),
        ),
    ]


if __name__ == "__main__":
    main()
