"""The `raft ft:gen` stage: for every exchange of every training interview, recall
memories from the author's earlier writing, judge them twice, and pack fine-tuning samples.

Every model call goes through the cache, so an interrupted run resumes where it stopped
and a finished one re-runs with zero calls; outputs are written atomically at the end.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from raft.backends.llm import CachedLLM
from raft.concurrency import bounded_map
from raft.console import Tally
from raft.conversation import (
    DEFAULT_MEMORY_STYLE,
    NO_MEMORIES,
    ConversationSpec,
    Exchange,
    render,
    system_prompt,
)
from raft.dataset import (
    Sample,
    check_openai,
    is_validation,
    to_openai,
    to_sharegpt,
    to_trl,
)
from raft.errors import RaftError, UsageError
from raft.files import read_jsonl, write_json, write_jsonl, write_text
from raft.memories import Recall
from raft.memory_quality import sample_quality
from raft.oracle import oracle_memories
from raft.review import apply_review, load_review
from raft.store import require_store
from raft.synthetic import BackTranslator, SyntheticSettings, speech_answer
from raft.transcripts import Interview, interview_memory_rows, training_interviews
from raft.workspace import Workspace

SYNTHETIC_INTERVIEWER = "an interviewer"


@dataclass(frozen=True)
class GenSettings:
    k: int = 6
    max_tokens: int = 4096  # token budget of one packed sample
    reserve: int = 512  # of which kept for the answer, so history never depends on it
    distractors: float = 0.0  # chance a sample also keeps pass-1-only memories
    context: bool = False  # add the previous answer to the retrieval query
    memory_style: str = DEFAULT_MEMORY_STYLE  # or NO_MEMORIES: the plain dataset
    valid_fraction: float = 0.1
    token_limit: int = 16385  # per-example limit checked for OpenAI files
    seed: int = 0
    judge_batch: bool = True  # the ConversationSpec fields of the same names
    skip_below: float = 0.0
    history_block: int = 4
    oracle_p: float = 0.0  # chance a real exchange's slot also holds its oracle (raft.oracle)
    unit: str = "chunk"  # what one memory is (ConversationSpec.unit)
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)


def _keeps_distractors(sample_id: str, settings: GenSettings) -> bool:
    # Seeded by the sample, so a re-run (or a resumed run) makes the same choice.
    return random.Random(f"{settings.seed}:{sample_id}").random() < settings.distractors


def _recalled(
    recall: Recall,
    settings: GenSettings,
    sample: Sample,
    before: str | None,
    previous_answer: str = "",
    exclude_doc: str | None = None,
) -> Sample:
    """Recall and judge memories for the sample's question with its real answer."""
    if recall.spec.memory_style == NO_MEMORIES:
        return sample  # the plain dataset: the same sample with an empty memory slot
    memories = recall.recall(sample.question, before, previous_answer, exclude_doc)
    recall.check_against_answer(sample.question, sample.answer, memories)
    sample.distractors = _keeps_distractors(sample.id, settings)
    sample.memories = memories
    sample.kept = [
        m.chunk_id for m in memories if m.useful and (m.consistent or sample.distractors)
    ]
    return sample


def _with_oracle(recall: Recall, settings: GenSettings, sample: Sample) -> Sample:
    """With chance `oracle_p`, also show the sentences of earlier writing nearest the real
    answer (raft.oracle) in the sample's memory slot, each at a random place among the kept
    memories, so that no place in the slot tells the relevant memory from a distractor."""
    # Seeded by the sample, so a re-run (or a resumed run) makes the same choice.
    rng = random.Random(f"{settings.seed}:oracle:{sample.id}")
    if recall.spec.memory_style == NO_MEMORIES or rng.random() >= settings.oracle_p:
        return sample
    oracle = oracle_memories(recall.store, sample.answer, sample.date, recall.spec.oracle_sentences)
    for memory in oracle:
        sample.kept.insert(rng.randint(0, len(sample.kept)), memory.chunk_id)
    sample.memories += oracle  # after the retrieved ones, which keep their order
    sample.oracle = bool(oracle)
    return sample


def _exchange_sample(
    recall: Recall, interview: Interview, index: int, settings: GenSettings
) -> Sample:
    question, answer = interview.exchanges[index]
    sample = Sample(
        id=f"{interview.id}:{index}",
        interview=interview.id,
        interviewer=interview.interviewer,
        target=recall.target,
        date=interview.date,
        url=interview.url,
        index=index,
        question=question,
        answer=answer,
        memories=[],
        kept=[],
        sources=list(interview.sources[index]) if interview.sources else [],
    )
    previous = interview.exchanges[index - 1][1] if index else ""
    sample = _recalled(recall, settings, sample, interview.date, previous)
    return _with_oracle(recall, settings, sample)


def _synthetic_sample(
    recall: Recall, chunk: dict[str, Any], lens: str, question: str, settings: GenSettings
) -> Sample:
    """A back-translated sample: the author's passage is the answer, never rewritten."""
    answer = speech_answer(chunk["text"]) if settings.synthetic.speech else chunk["text"].strip()
    sample_id = f"synthetic:{chunk['id']}:{lens}"
    sample = Sample(
        id=sample_id,
        interview=sample_id,
        interviewer=SYNTHETIC_INTERVIEWER,
        target=recall.target,
        date=chunk.get("date") or "an unknown date",
        url=chunk.get("link", ""),
        index=0,
        question=question,
        answer=answer,
        memories=[],
        kept=[],
        synthetic=True,
        lens=lens,
        source_chunk=chunk["id"],
    )
    # No memory may contain the answer: the passage's whole document is left out.
    before = chunk.get("date") or None
    return _recalled(recall, settings, sample, before, exclude_doc=chunk["doc_id"])


def max_synthetic(real: int, ratio: float) -> int:
    """Synthetic samples allowed beside `real` ones so that their share stays <= ratio."""
    if ratio >= 1:
        return 10**9
    return int(ratio * real / (1 - ratio) + 1e-9)


def render_interview(samples: list[Sample], spec: ConversationSpec) -> None:
    """Render each sample of one interview, in order, with the earlier exchanges as history.

    The history rule, the same at inference: an earlier exchange's slot shows the memories
    judged useful from its question alone (what the replica recalls live); only the
    sample's own question shows the memories kept against the real answer.
    """
    first = samples[0]
    system = system_prompt(spec.target, first.interviewer, first.date)
    history = [Exchange(s.question, s.answer, s.useful()) for s in samples]
    for sample in samples:
        rendered = render(
            system,
            history[: sample.index],
            sample.question,
            sample.kept_memories(),
            [spec.budget],
            answer=sample.answer,
            block=spec.history_block,
        )
        sample.messages = rendered.messages
        sample.history = rendered.history
        sample.history_dropped = rendered.dropped
        sample.n_tokens = rendered.n_tokens


def render_interviews(samples: list[Sample], spec: ConversationSpec) -> None:
    """Render the samples interview by interview (a synthetic sample is an interview of one)."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.interview, []).append(sample)
    for group in groups.values():
        render_interview(sorted(group, key=lambda s: s.index), spec)


def open_spec(ws: Workspace, settings: GenSettings) -> ConversationSpec:
    """The conversation spec this run makes data with."""
    require_store(ws.persona, ws.store)
    spec = ConversationSpec(
        target=ws.target().prompt_name,
        generator=str(ws.spec("generator")),
        generator_id=ws.llm().model_id,
        embedder=str(ws.spec("embedder")),
        embedder_id=ws.embedder.model_id,
        k=settings.k,
        context=settings.context,
        memory_style=settings.memory_style,
        max_tokens=settings.max_tokens,
        reserve=settings.reserve,
        judge_batch=settings.judge_batch,
        skip_below=settings.skip_below,
        history_block=settings.history_block,
        oracle_p=settings.oracle_p,
        unit=settings.unit,
    )
    return spec


def generate(
    ws: Workspace, settings: GenSettings, progress: Any = None
) -> tuple[list[Sample], dict[str, Any], CachedLLM]:
    """Samples for every exchange, how they were made, and the LLM that made them."""
    persona = ws.persona
    interviews = training_interviews(persona)
    if not interviews:
        raise UsageError(
            f"no training interviews in {persona.transcripts}: add one with "
            f"`raft transcript:add {persona.name} FILE`"
        )
    spec = open_spec(ws, settings)
    llm, store = ws.llm(), ws.store
    # Earlier interviews are past output too; dated, so only later interviews retrieve them.
    store.sync(interview_memory_rows(interviews), kind="interview")
    llm.ledger = {}  # every request behind the samples, for `raft check`
    recall = Recall(store, llm, spec)

    jobs = [(iv, i) for iv in interviews for i in range(len(iv.exchanges))]
    tally = Tally(progress, "ft:gen samples", len(jobs))

    def advance(_: Sample) -> None:
        tally.advance()

    samples = bounded_map(
        lambda job: _exchange_sample(recall, *job, settings), jobs, llm.concurrency, advance
    )
    made: dict[str, Any] = {"spec": spec.to_row(), "ft_gen": asdict(settings)}
    if settings.synthetic.n:
        translator = BackTranslator(llm, store.embedder, recall.target, settings.synthetic)
        cap = max_synthetic(len(samples), settings.synthetic.ratio)
        passages = translator.select(read_jsonl(persona.chunks), min(settings.synthetic.n, cap))
        pairs = translator.pairs(passages)[:cap]
        tally.grow(len(pairs))
        samples += bounded_map(
            lambda pair: _synthetic_sample(recall, *pair, settings),
            pairs,
            llm.concurrency,
            advance,
        )
        made["synthetic_prompts"] = translator.made()["prompts"]
    render_interviews(samples, spec)
    for sample in samples:
        sample.made = made
    return samples, made, llm


def record_calls(folder: Path, llm: CachedLLM) -> None:
    """List the cache keys of every call behind raft.jsonl (their requests stay in the cache),
    so `raft check` can prove no held-out text was sent while making training data."""
    if llm.cache is not None:
        llm.cache.keep_requests(llm.ledger or {})  # entries cached before requests were kept
    write_text(folder / "cache_keys.txt", "".join(f"{key}\n" for key in sorted(llm.ledger or {})))


def write_formats(out: Path, samples: list[Sample], settings: GenSettings) -> dict:
    """The OpenAI, TRL and ShareGPT files from the samples; returns the OpenAI check."""
    train = [s for s in samples if not is_validation(s.id, settings.valid_fraction)]
    valid = [s for s in samples if is_validation(s.id, settings.valid_fraction)]
    check = check_openai([to_openai(s.messages) for s in train + valid], settings.token_limit)
    if check.errors:
        raise RaftError("OpenAI file check failed: " + "; ".join(check.errors))
    write_jsonl(out / "openai.jsonl", [to_openai(s.messages) for s in train])
    write_jsonl(out / "openai.valid.jsonl", [to_openai(s.messages) for s in valid])
    write_jsonl(out / "messages.jsonl", [to_trl(s.messages) | {"id": s.id} for s in train])
    write_jsonl(out / "messages.valid.jsonl", [to_trl(s.messages) | {"id": s.id} for s in valid])
    write_json(out / "sharegpt.json", [to_sharegpt(s.messages) | {"id": s.id} for s in samples])
    return {"train": len(train), "valid": len(valid), "warnings": check.warnings}


def statistics(
    samples: list[Sample], made: dict[str, Any], split: dict, judged: list[Sample] | None = None
) -> dict[str, Any]:
    """What the samples written hold. Retrieval and judge quality is measured on `judged`, the
    samples as generated: a memory dropped in review is no verdict of the judge."""
    memories = [m for s in samples for m in s.retrieved()]  # what the question recalled
    tokens = [s.n_tokens for s in samples]
    bins = Counter(min(t // 512, 16) * 512 for t in tokens)
    spec = made.get("spec", {})
    return {
        "samples": len(samples),
        "real_samples": sum(not s.synthetic for s in samples),
        "synthetic_samples": sum(s.synthetic for s in samples),
        "interviews": len({s.interview for s in samples if not s.synthetic}),
        "memories": {
            "retrieved": len(memories),
            "useful_by_question": sum(bool(m.useful) for m in memories),
            "consistent_with_answer": sum(bool(m.consistent) for m in memories),
            "kept": sum(len(s.kept) for s in samples),
            "errors": sum(bool(m.error) for m in memories),
            # a memory the batch judge gave no well-formed verdict, so judged on its own
            "judged_alone": sum(m.alone for m in memories),
            "skipped_below_best": sum(m.gate == "below_best" for m in memories),
        },
        # samples whose slot also holds the sentences nearest the real answer (--oracle-p)
        "oracle_samples": sum(s.oracle for s in samples),
        # Retrieval and judge against the essays each answer draws on, and what the gate
        # dropped (raft.memory_quality); rates are None without annotated sources.
        "quality": (
            None
            if spec.get("memory_style") == NO_MEMORIES
            else sample_quality(samples if judged is None else judged, spec.get("k", 0))
        ),
        "synthetic_by_lens": dict(Counter(s.lens for s in samples if s.synthetic)),
        "samples_with_distractors": sum(s.distractors for s in samples),
        "samples_truncated": sum(s.history_dropped > 0 for s in samples),
        # An answer longer than the reserve takes the sample past the budget; history is
        # chosen without the answer, so that inference can choose it the same way.
        "samples_over_budget": sum(s.n_tokens > spec.get("max_tokens", 1 << 30) for s in samples),
        "tokens": {
            "min": min(tokens, default=0),
            "max": max(tokens, default=0),
            "mean": round(sum(tokens) / len(tokens), 1) if tokens else 0,
            "histogram": {f"{lo}-{lo + 511}": n for lo, n in sorted(bins.items())},
        },
        "split": split,
        "spec": spec,
        "made": made,
    }


def run_ft_gen(
    ws: Workspace,
    settings: GenSettings,
    only: str | None = None,
    progress: Any = None,
) -> tuple[dict[str, Any], int]:
    """`raft ft:gen`: `only="oai"` rebuilds formats from raft.jsonl; `only="generic"` skips them.

    Writes the RAFT dataset into finetune/, or with memory style "none" the plain one into
    finetune/plain/. The folder's review marks (raft.review) apply to the format files and the
    stats, never to raft.jsonl: they are an overlay on the samples as made."""
    persona = ws.persona
    dataset = "plain" if settings.memory_style == NO_MEMORIES else "raft"
    folder = persona.dataset(dataset)
    generic = folder / "raft.jsonl"
    if only == "oai":
        if not generic.is_file():
            flags = " --no-memories" if dataset == "plain" else ""
            raise UsageError(
                f"no {generic}: run `raft ft:gen {persona.name}{flags} --generic` first"
            )
        samples = [Sample.from_row(row) for row in read_jsonl(generic)]
        made, calls = (samples[0].made if samples else {}), 0
        cost = _previous_cost(folder)  # the samples are those that cost was spent on
    else:
        samples, made, llm = generate(ws, settings, progress)
        calls = llm.calls
        write_jsonl(generic, [s.to_row() for s in samples])
        record_calls(folder, llm)
        cost = generation_cost(llm, len(samples))

    def render(group: list[Sample]) -> None:
        render_interviews(group, ConversationSpec.from_row(made["spec"]))

    written, review = apply_review(samples, load_review(folder), render)
    split = {} if only == "generic" else write_formats(folder, written, settings)
    stats = {"dataset": dataset} | statistics(written, made, split, judged=samples)
    stats["review"] = review
    stats["cost"] = cost
    write_json(folder / "stats.json", stats)
    return stats, calls


def generation_cost(llm: CachedLLM, samples: int) -> dict[str, Any]:
    """What every model call behind the samples cost when it was made (kept in its cache
    row), in all and per sample: the same after a re-run that made no call, so that the
    files of a re-run are the same too. Seconds are the calls' own, in model time."""
    data, unrecorded = llm.recorded_usage(llm.ledger or {})
    per_sample = {
        key: round(value / samples, 2) if samples else 0 for key, value in data.row().items()
    }
    return {"data": data.row() | {"calls_unrecorded": unrecorded}, "per_sample": per_sample}


def _previous_cost(folder: Path) -> dict[str, Any] | None:
    path = folder / "stats.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("cost")
