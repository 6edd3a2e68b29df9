"""A retriever trained on the persona's own interviews (`raft embed:train`).

Retrieval by the question finds the sentences that *sound like* the question; what a memory
slot needs is what the author then said. The training interviews show it: for each of their
questions, the author's earlier sentences nearest the real answer (raft.oracle) are the
passages the question should have found. MiniLM is fine-tuned on those (question, sentence)
pairs with in-batch negatives, from the training interviews only: a benchmark (held-out)
interview is never read here, so the benchmark still measures what the replica never saw.

The model is saved under `models/RUN/retriever/` with a registry record of method
`retriever`; bare `local` then embeds with it (raft.workspace) once the store is rebuilt.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from rich.progress import Progress

from raft.backends import models
from raft.console import Tally
from raft.errors import UsageError
from raft.files import write_jsonl
from raft.oracle import oracle_memories
from raft.paths import Persona
from raft.store import Store, require_store
from raft.training.registry import (
    FAILED,
    RETRIEVER,
    SUCCEEDED,
    ModelRecord,
    file_sha256,
    now,
    run_id,
    save_record,
)
from raft.transcripts import load_interviews

ORACLE_SENTENCES = 2  # as the training-time oracle shows (ConversationSpec.oracle_sentences)


@dataclass(frozen=True)
class TrainingPair:
    """One question of a training interview and an earlier sentence its answer drew near."""

    question: str
    sentence: str
    chunk_id: str  # "<chunk id>@<offset>": where the sentence is in the store
    interview: str  # the transcript's file name
    date: str  # the interview's date: the sentence is dated before it


@dataclass(frozen=True)
class RetrieverSettings:
    epochs: int = 3
    batch_size: int = 16
    lr: float = 2e-5
    seed: int = 0
    sentences: int = ORACLE_SENTENCES


def training_pairs(
    persona: Persona, store: Store, n: int = ORACLE_SENTENCES, progress: Progress | None = None
) -> list[TrainingPair]:
    """(question, oracle sentence) pairs from `transcripts/` only, never `benchmark/`."""
    interviews = load_interviews(persona.transcripts)
    tally = Tally(progress, "finding pairs", sum(len(i.exchanges) for i in interviews))
    pairs = []
    for interview in interviews:
        for question, answer in interview.exchanges:
            for memory in oracle_memories(store, answer, before=interview.date, n=n):
                pair = TrainingPair(
                    question, memory.rephrased, memory.chunk_id, interview.path.name, interview.date
                )
                pairs.append(pair)
            tally.advance()
    return pairs


def train_retriever(
    persona: Persona,
    store: Store,
    settings: RetrieverSettings,
    progress: Progress | None = None,
) -> ModelRecord:
    """Fine-tune MiniLM on the persona's training pairs; the record names the saved model."""
    require_store(persona, store)
    pairs = training_pairs(persona, store, settings.sentences, progress)
    if not pairs:
        raise UsageError(
            f"no training pairs for {persona.name!r}: no answer in {persona.transcripts} has "
            f"earlier writing near it; add interviews with `raft transcript:add {persona.name}` "
            "(dated after the writing they draw on)"
        )
    record = ModelRecord(
        id=run_id(RETRIEVER),
        venue="local",
        method=RETRIEVER,
        base_model="all-MiniLM-L6-v2",
        params=dataclasses.asdict(settings)
        | {"pairs": len(pairs), "oracle_embedder": store.embedder.model_id},
    )
    folder = persona.models / record.id
    pairs_file = folder / "pairs.jsonl"
    write_jsonl(pairs_file, (dataclasses.asdict(p) for p in pairs))
    record.files["pairs"] = {
        "path": str(pairs_file.relative_to(persona.root)),
        "sha256": file_sha256(pairs_file),
    }
    save_record(persona, record)
    try:
        record.metrics = _fine_tune(pairs, folder, settings, progress)
    except BaseException as exc:  # recorded, then raised: a failed run stays in the registry
        record.status, record.finished = FAILED, now()
        record.error = f"{type(exc).__name__}: {exc}"
        save_record(persona, record)
        raise
    record.model = str((folder / "retriever").relative_to(persona.root))
    record.status, record.finished = SUCCEEDED, now()
    save_record(persona, record)  # last: a succeeded record means the model is complete
    return record


def _fine_tune(
    pairs: list[TrainingPair], folder: Path, settings: RetrieverSettings, progress: Progress | None
) -> dict[str, float]:
    """MultipleNegativesRankingLoss over (question, sentence); batches never hold the same
    question twice, so a question's other oracle sentence is never its negative."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerModelCardData,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import PrinterCallback, set_seed

    from raft.console import quiet_libraries
    from raft.training.base import progress_callback

    quiet_libraries()
    set_seed(settings.seed)  # the model's own initialisation is fixed; the data order too
    card = SentenceTransformerModelCardData(generate_widget_examples=False)  # no stray bar
    model = SentenceTransformer(
        str(models.minilm_dir()), device="cpu", local_files_only=True, model_card_data=card
    )
    data = Dataset.from_dict(
        {"anchor": [p.question for p in pairs], "positive": [p.sentence for p in pairs]}
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(folder / "checkpoints"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.lr,
        warmup_steps=0.1,
        seed=settings.seed,
        data_seed=settings.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        save_strategy="no",
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    callbacks = [progress_callback(progress, "training the retriever")] if progress else []
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=data,
        loss=MultipleNegativesRankingLoss(model),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # it prints raw log dicts to stdout
    output = trainer.train()
    model.save(str(folder / "retriever"))
    return {"train_loss": round(float(output.training_loss), 6), "steps": output.global_step}
