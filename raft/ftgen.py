"""The `raft ft:gen` stage: for every exchange of every training interview, recall
memories from the author's earlier writing, judge them twice, and pack fine-tuning samples.

Every model call goes through the cache, so an interrupted run resumes where it stopped
and a finished one re-runs with zero calls; outputs are written atomically at the end.
"""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from raft.backends.llm import CachedLLM
from raft.config import display_name, persona_embedder, persona_llm
from raft.dataset import check_openai, is_validation, pack_sample, to_openai, to_sharegpt, to_trl
from raft.errors import RaftError
from raft.files import read_jsonl, write_json, write_jsonl, write_text
from raft.memories import Memory, Recall, RecallSettings, system_prompt, user_turn
from raft.paths import Persona
from raft.store import Store
from raft.synthetic import BackTranslator, SyntheticSettings, speech_answer
from raft.transcripts import Interview, interview_memory_rows, training_interviews

SYNTHETIC_INTERVIEWER = "an interviewer"


@dataclass(frozen=True)
class GenSettings:
    k: int = 6
    max_tokens: int = 4096  # token budget of one packed sample
    distractors: float = 0.0  # chance a sample also keeps pass-1-only memories
    context: bool = False  # add the previous answer to the retrieval query
    valid_fraction: float = 0.1
    token_limit: int = 16385  # per-example limit checked for OpenAI files
    seed: int = 0
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)


def _keeps_distractors(sample_id: str, settings: GenSettings) -> bool:
    # Seeded by the sample, so a re-run (or a resumed run) makes the same choice.
    return random.Random(f"{settings.seed}:{sample_id}").random() < settings.distractors


def _sample_row(
    recall: Recall,
    settings: GenSettings,
    *,
    sample_id: str,
    question: str,
    answer: str,
    before: str | None,
    context: str = "",
    exclude_doc: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Recall and judge memories for one question with its real answer; the raft.jsonl row."""
    memories = recall.recall(question, before=before, context=context, exclude_doc=exclude_doc)
    recall.check_against_answer(question, answer, memories)
    distractor = _keeps_distractors(sample_id, settings)
    kept = [m for m in memories if m.useful and (m.consistent or distractor)]
    return {
        "id": sample_id,
        **fields,
        "question": question,
        "answer": answer,
        "memories": [m.row() for m in memories],
        "kept": [m.chunk_id for m in kept],
        "distractors": distractor,
    }


def _exchange_row(
    recall: Recall, interview: Interview, index: int, settings: GenSettings
) -> dict[str, Any]:
    question, answer = interview.exchanges[index]
    context = interview.exchanges[index - 1][1] if settings.context and index else ""
    return _sample_row(
        recall,
        settings,
        sample_id=f"{interview.id}:{index}",
        question=question,
        answer=answer,
        before=interview.date,
        context=context,
        interview=interview.id,
        interviewer=interview.interviewer,
        target=interview.target,
        date=interview.date,
        url=interview.url,
        index=index,
        synthetic=False,
    )


def _synthetic_row(
    recall: Recall, chunk: dict[str, Any], lens: str, question: str, settings: GenSettings
) -> dict[str, Any]:
    """A back-translated sample: the author's passage is the answer, never rewritten."""
    answer = speech_answer(chunk["text"]) if settings.synthetic.speech else chunk["text"].strip()
    return _sample_row(
        recall,
        settings,
        sample_id=f"synthetic:{chunk['id']}:{lens}",
        question=question,
        answer=answer,
        before=chunk.get("date") or None,
        exclude_doc=chunk["doc_id"],  # no memory may contain the answer
        interview=f"synthetic:{chunk['id']}:{lens}",
        interviewer=SYNTHETIC_INTERVIEWER,
        target=recall.target,
        date=chunk.get("date") or "an unknown date",
        url=chunk.get("link", ""),
        index=0,
        synthetic=True,
        lens=lens,
        source_chunk=chunk["id"],
    )


def max_synthetic(real: int, ratio: float) -> int:
    """Synthetic samples allowed beside `real` ones so that their share stays <= ratio."""
    if ratio >= 1:
        return 10**9
    return int(ratio * real / (1 - ratio) + 1e-9)


def _pack_interview(rows: list[dict[str, Any]], settings: GenSettings) -> None:
    """Add the packed `messages` (and what history they carry) to each row of one interview."""
    turns = []
    for row in rows:
        by_id = {m["chunk_id"]: m for m in row["memories"]}
        kept = [Memory(**by_id[chunk_id]) for chunk_id in row["kept"]]
        turns.append((user_turn(row["question"], kept), row["answer"]))
    first = rows[0]
    system = system_prompt(first["target"], first["interviewer"], first["date"])
    for row in rows:
        packed = pack_sample(system, turns, row["index"], settings.max_tokens)
        row.update(
            messages=packed.messages,
            history=packed.history,
            history_dropped=packed.dropped,
            n_tokens=packed.n_tokens,
        )


def generate(
    persona: Persona,
    settings: GenSettings,
    generator: str | None = None,
    embedder: str | None = None,
    progress: Any = None,
) -> tuple[list[dict[str, Any]], dict[str, Any], CachedLLM]:
    """Rows of raft.jsonl for every exchange, how they were made, and the LLM that made them."""
    interviews = training_interviews(persona)
    if not interviews:
        raise RaftError(
            f"no training interviews in {persona.transcripts}: add one with "
            f"`raft transcript:add {persona.name} FILE`"
        )
    store = Store(persona, persona_embedder(persona, embedder))
    if not store.count():
        raise RaftError(f"the store is empty: run `raft embed {persona.name}` first")
    # Earlier interviews are past output too; dated, so only later interviews retrieve them.
    store.sync(interview_memory_rows(interviews), kind="interview")
    llm = persona_llm(persona, "generator", generator)
    llm.ledger = {}  # every request behind the samples, for `raft check`
    recall = Recall(store, llm, display_name(persona), RecallSettings(k=settings.k))

    jobs = [(iv, i) for iv in interviews for i in range(len(iv.exchanges))]
    task = progress.add_task("ft:gen samples", total=len(jobs)) if progress else None

    def run_all(make_row, items: list) -> list[dict[str, Any]]:
        """One row per item, at most `concurrency` at a time, in order."""

        def step(item) -> dict[str, Any]:
            row = make_row(item)
            if progress:
                progress.advance(task)
            return row

        with ThreadPoolExecutor(max_workers=max(1, llm.concurrency)) as pool:
            return list(pool.map(step, items))

    rows = run_all(lambda job: _exchange_row(recall, *job, settings), jobs)
    made = {**recall.made(), "ft_gen": asdict(settings)}
    if settings.synthetic.n:
        translator = BackTranslator(llm, store.embedder, recall.target, settings.synthetic)
        cap = max_synthetic(len(rows), settings.synthetic.ratio)
        passages = translator.select(read_jsonl(persona.chunks), min(settings.synthetic.n, cap))
        pairs = translator.pairs(passages)[:cap]
        if progress:
            progress.update(task, total=len(jobs) + len(pairs))
        rows += run_all(lambda pair: _synthetic_row(recall, *pair, settings), pairs)
        made["prompts"] |= translator.made()["prompts"]
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["interview"], []).append(row)
    for group in groups.values():
        _pack_interview(group, settings)
    return rows, made, llm


def record_calls(persona: Persona, llm: CachedLLM) -> None:
    """List the cache keys of every call behind raft.jsonl (their requests stay in the cache),
    so `raft check` can prove no held-out text was sent while making training data."""
    if llm.cache is not None:
        llm.cache.keep_requests(llm.ledger or {})  # entries cached before requests were kept
    write_text(persona.cache_keys, "".join(f"{key}\n" for key in sorted(llm.ledger or {})))


def write_formats(persona: Persona, rows: list[dict[str, Any]], settings: GenSettings) -> dict:
    """The OpenAI, TRL and ShareGPT files from raft.jsonl rows; returns the OpenAI check."""
    train = [r for r in rows if not is_validation(r["id"], settings.valid_fraction)]
    valid = [r for r in rows if is_validation(r["id"], settings.valid_fraction)]
    openai_train = [to_openai(r["messages"]) for r in train]
    check = check_openai(
        openai_train + [to_openai(r["messages"]) for r in valid], settings.token_limit
    )
    if check.errors:
        raise RaftError("OpenAI file check failed: " + "; ".join(check.errors))
    out = persona.finetune
    write_jsonl(out / "openai.jsonl", openai_train)
    write_jsonl(out / "openai.valid.jsonl", [to_openai(r["messages"]) for r in valid])
    write_jsonl(out / "messages.jsonl", [to_trl(r["messages"]) | {"id": r["id"]} for r in train])
    write_jsonl(
        out / "messages.valid.jsonl", [to_trl(r["messages"]) | {"id": r["id"]} for r in valid]
    )
    write_json(out / "sharegpt.json", [to_sharegpt(r["messages"]) | {"id": r["id"]} for r in rows])
    return {"train": len(train), "valid": len(valid), "warnings": check.warnings}


def statistics(rows: list[dict[str, Any]], made: dict[str, Any], split: dict) -> dict[str, Any]:
    memories = [m for r in rows for m in r["memories"]]
    tokens = [r["n_tokens"] for r in rows]
    bins = Counter(min(t // 512, 16) * 512 for t in tokens)
    return {
        "samples": len(rows),
        "real_samples": sum(not r["synthetic"] for r in rows),
        "synthetic_samples": sum(bool(r["synthetic"]) for r in rows),
        "interviews": len({r["interview"] for r in rows if not r["synthetic"]}),
        "memories": {
            "retrieved": len(memories),
            "useful_by_question": sum(bool(m["useful"]) for m in memories),
            "consistent_with_answer": sum(bool(m["consistent"]) for m in memories),
            "kept": sum(len(r["kept"]) for r in rows),
            "errors": sum(bool(m["error"]) for m in memories),
        },
        "synthetic_by_lens": dict(Counter(r["lens"] for r in rows if r["synthetic"])),
        "samples_with_distractors": sum(r["distractors"] for r in rows),
        "samples_truncated": sum(r["history_dropped"] > 0 for r in rows),
        "tokens": {
            "min": min(tokens, default=0),
            "max": max(tokens, default=0),
            "mean": round(sum(tokens) / len(tokens), 1) if tokens else 0,
            "histogram": {f"{lo}-{lo + 511}": n for lo, n in sorted(bins.items())},
        },
        "split": split,
        "made": made,
    }


def run_ft_gen(
    persona: Persona,
    settings: GenSettings,
    only: str | None = None,
    generator: str | None = None,
    embedder: str | None = None,
    progress: Any = None,
) -> tuple[dict[str, Any], int]:
    """`raft ft:gen`: `only="oai"` rebuilds formats from raft.jsonl; `only="generic"` skips them."""
    generic = persona.finetune / "raft.jsonl"
    if only == "oai":
        if not generic.is_file():
            raise RaftError(f"no {generic}: run `raft ft:gen {persona.name} --generic` first")
        rows = list(read_jsonl(generic))
        made, calls = (rows[0].get("made", {}) if rows else {}), 0
    else:
        rows, made, llm = generate(persona, settings, generator, embedder, progress)
        calls = llm.calls
        write_jsonl(generic, [r | {"made": made} for r in rows])
        record_calls(persona, llm)
    split = {} if only == "generic" else write_formats(persona, rows, settings)
    stats = statistics(rows, made, split)
    write_json(persona.finetune / "stats.json", stats)
    return stats, calls
