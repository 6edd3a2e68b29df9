"""OpenAI fine-tuning: upload finetune/openai.jsonl, start a job, follow it to the end.

A job is in the registry from the moment it exists, so Ctrl-C only detaches: running the
same command again finds the running record (same server, base model, files, parameters)
and re-attaches instead of paying for a second job.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from raft.console import err
from raft.conversation import training_spec
from raft.errors import RaftError, UsageError
from raft.paths import Persona, ft_gen_command
from raft.training.registry import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    ModelRecord,
    file_sha256,
    load_records,
    now,
    save_record,
)

if TYPE_CHECKING:
    import openai
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

FILES = {"train": "openai.jsonl", "valid": "openai.valid.jsonl"}
FINAL = {"succeeded": SUCCEEDED, "failed": FAILED, "cancelled": CANCELLED}
# OpenAI's metrics events -> the registry's names, shared with local runs (`eval_loss`).
METRICS = {
    "step": "step",
    "total_steps": "total_steps",
    "train_loss": "train_loss",
    "valid_loss": "eval_loss",
    "full_valid_loss": "full_eval_loss",
    "train_mean_token_accuracy": "train_accuracy",
    "valid_mean_token_accuracy": "eval_accuracy",
}


def default_poll_interval() -> float:
    """Seconds between polls: `RAFT_POLL_INTERVAL`, else 10."""
    return float(os.environ.get("RAFT_POLL_INTERVAL") or 10)


@dataclass(frozen=True)
class JobSettings:
    base_model: str
    epochs: int | None = None
    lr_multiplier: float | None = None
    batch_size: int | None = None
    suffix: str = ""
    dataset: str = "raft"
    poll_interval: float = field(default_factory=default_poll_interval)

    def hyperparameters(self) -> dict[str, Any]:
        """Only what the user gave; OpenAI picks the rest ("auto")."""
        given = {
            "n_epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.lr_multiplier,
        }
        return {k: v for k, v in given.items() if v is not None}


def run_openai_job(persona: Persona, settings: JobSettings) -> ModelRecord:
    """Start (or re-attach to) a fine-tuning job and follow it until it ends."""
    from raft.backends.openai_client import make_client

    local = local_files(persona, settings.dataset)
    client = make_client(None)
    params = {"suffix": settings.suffix, **settings.hyperparameters()}
    params["api_base"] = str(client.base_url)
    record = running_job(persona, settings.base_model, local, params)
    try:
        with api_errors():
            if record is not None:
                say(f"re-attaching to running job {record.job_id}")
            else:
                uploads = upload_files(client, persona, local, params["api_base"])
                with interrupt_deferred():
                    record = create_job(client, persona, settings, uploads, params)
            return follow(client, persona, record, settings.poll_interval)
    except KeyboardInterrupt:
        if record is not None:
            say(
                f"detached from job {record.job_id}; it keeps running on the server - run "
                f"`{reattach_command(persona, settings)}` again to re-attach",
            )
        raise
    except RaftError as exc:
        if record is None or record.status != RUNNING:
            raise
        raise RaftError(
            f"{exc}; job {record.job_id} is kept - run `{reattach_command(persona, settings)}` "
            "again to re-attach"
        ) from None


def local_files(persona: Persona, dataset: str = "raft") -> dict[str, dict[str, Any]]:
    """Role -> path and sha256 of the files to upload; an absent or empty valid file is skipped."""
    folder = persona.dataset(dataset)
    files = {}
    for role, name in FILES.items():
        path = folder / name
        if path.is_file() and path.stat().st_size:
            files[role] = {"path": str(path.relative_to(persona.root)), "sha256": file_sha256(path)}
    if "train" not in files:
        raise UsageError(
            f"no training data: {folder / FILES['train']} is missing or empty; "
            f"run `{ft_gen_command(persona, dataset)}` first"
        )
    return files


def same_files(record: ModelRecord, files: dict[str, dict[str, Any]]) -> bool:
    return {r: f.get("sha256") for r, f in record.files.items()} == {
        r: f["sha256"] for r, f in files.items()
    }


def running_job(
    persona: Persona, base_model: str, files: dict[str, dict[str, Any]], params: dict[str, Any]
) -> ModelRecord | None:
    """The newest running OpenAI job started from the same data and settings, if any."""
    running = [r for r in load_records(persona) if r.venue == "openai" and r.status == RUNNING]
    for record in reversed(running):
        if (
            record.base_model == base_model
            and record.params == params
            and same_files(record, files)
        ):
            return record
    for record in running:
        say(f"note: job {record.job_id} is still running with other data or settings")
    return None


def upload_files(
    client: openai.OpenAI, persona: Persona, files: dict[str, dict[str, Any]], api_base: str
) -> dict[str, dict[str, Any]]:
    """Upload each file, or reuse an earlier upload of the same bytes still on the server."""
    done = {}
    for role, info in files.items():
        path = persona.root / info["path"]
        file_id = earlier_upload(client, persona, info["sha256"], api_base)
        if file_id:
            say(f"reusing upload {file_id} of {info['path']}")
        else:
            file_id = client.files.create(file=path, purpose="fine-tune").id
            say(f"uploaded {info['path']} as {file_id}")
        done[role] = {**info, "file_id": file_id}
    return done


def earlier_upload(client: openai.OpenAI, persona: Persona, sha256: str, api_base: str) -> str:
    """The id of an earlier upload with this sha256 on this server, if it still exists."""
    import openai

    for record in reversed(load_records(persona)):
        if record.venue != "openai" or record.params.get("api_base") != api_base:
            continue
        for info in record.files.values():
            if info.get("sha256") == sha256 and info.get("file_id"):
                try:
                    return client.files.retrieve(info["file_id"]).id
                except openai.NotFoundError:
                    return ""
    return ""


def create_job(
    client: openai.OpenAI,
    persona: Persona,
    settings: JobSettings,
    files: dict[str, dict[str, Any]],
    params: dict[str, Any],
) -> ModelRecord:
    """Create the job and record it at once, so it can always be re-attached."""
    hyperparameters = settings.hyperparameters()
    optional: dict[str, str] = {"suffix": settings.suffix} if settings.suffix else {}
    if "valid" in files:
        optional["validation_file"] = files["valid"]["file_id"]
    job = client.fine_tuning.jobs.create(
        model=settings.base_model,
        training_file=files["train"]["file_id"],
        method={"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
        **optional,
    )
    record = ModelRecord(
        id=f"openai-{job.id}",
        venue="openai",
        method="sft",
        base_model=settings.base_model,
        job_id=job.id,
        files=files,
        params=params,
        spec=spec.to_row() if (spec := training_spec(persona, settings.dataset)) else {},
        dataset=settings.dataset,
    )
    save_record(persona, record)
    say(f"started job {job.id} on {settings.base_model}")
    return record


def follow(
    client: openai.OpenAI, persona: Persona, record: ModelRecord, interval: float
) -> ModelRecord:
    """Poll the job and its events until it ends; record the outcome.

    Ctrl-C only sets a flag that the loop checks between polls, so the interrupt never
    lands inside the HTTP client or the spinner's locks, and detaching is always clean.
    """
    seen: set[str] = set()
    last = ""
    with sigint_flag() as interrupted, err.status(f"job {record.job_id}: checking") as spinner:
        while not interrupted.is_set():
            job = retrieve(client, persona, record)
            for event in new_events(client, record.job_id, seen):
                show_event(event)
                record.metrics.update(event_metrics(event))
            if job.status != last:
                say(f"job {job.id}: {job.status}")
                spinner.update(f"job {job.id}: {job.status}")
                last = job.status
            if job.status in FINAL:
                return finish(persona, record, job)
            interrupted.wait(interval)
    raise KeyboardInterrupt


def retrieve(client: openai.OpenAI, persona: Persona, record: ModelRecord) -> FineTuningJob:
    """The job now; one the server no longer knows is marked failed, so it is not re-attached."""
    import openai

    try:
        return client.fine_tuning.jobs.retrieve(record.job_id)
    except openai.NotFoundError:
        record.status, record.finished = FAILED, now()
        record.error = f"job not found on {record.params.get('api_base', 'the server')}"
        save_record(persona, record)
        raise RaftError(
            f"job {record.job_id}: {record.error}; run again to start a new job"
        ) from None


def new_events(client: openai.OpenAI, job_id: str, seen: set[str]) -> list[FineTuningJobEvent]:
    """Events not shown yet, oldest first."""
    # OpenAI lists events newest first and its `after` cursor pages towards older ones, so
    # new events are read from the top down to the first one already seen.
    fresh = []
    for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
        if event.id in seen:
            break
        fresh.append(event)
    seen.update(event.id for event in fresh)
    return fresh[::-1]


def show_event(event: FineTuningJobEvent) -> None:
    """One line on stderr: training progress for metrics events, else the message."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.type == "metrics" and "step" in data:
        losses = [
            f"{label} {data[key]:.3f}"
            for key, label in [("train_loss", "training loss"), ("valid_loss", "validation loss")]
            if isinstance(data.get(key), int | float)
        ]
        line = f"  [step {data['step']}/{data.get('total_steps', '?')}] " + ", ".join(losses)
    else:
        line = f"  {event.message}"
    style = {"warn": "yellow", "error": "red"}.get(event.level)
    err.print(line, style=style, markup=False, highlight=False)


def event_metrics(event: FineTuningJobEvent) -> dict[str, Any]:
    if event.type != "metrics" or not isinstance(event.data, dict):
        return {}
    return {
        name: event.data[key] for key, name in METRICS.items() if event.data.get(key) is not None
    }


def finish(persona: Persona, record: ModelRecord, job: FineTuningJob) -> ModelRecord:
    """Record a finished job; a failed or cancelled one stays on record and raises."""
    record.status = FINAL[job.status]
    record.finished = timestamp(job.finished_at) if job.finished_at else now()
    if job.trained_tokens is not None:
        record.metrics["trained_tokens"] = job.trained_tokens
    if job.status == "succeeded":
        record.model = job.fine_tuned_model or ""
        save_record(persona, record)
        say(f"job {job.id} succeeded: {record.model}")
        return record
    message = job.error.message if job.error else f"the job was {job.status}"
    record.error = f"{job.error.code}: {message}" if job.error and job.error.code else message
    save_record(persona, record)
    raise RaftError(f"job {job.id} {job.status}: {message}")


def timestamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def reattach_command(persona: Persona, settings: JobSettings) -> str:
    """The command line that finds this job again (the same settings match the record)."""
    words = ["raft ft:run", persona.name, "--backend openai --base-model", settings.base_model]
    flags = {
        "--epochs": settings.epochs,
        "--batch-size": settings.batch_size,
        "--lr-multiplier": settings.lr_multiplier,
        "--suffix": settings.suffix if settings.suffix != persona.name else None,
        "--dataset": settings.dataset if settings.dataset != "raft" else None,
    }
    words += [f"{flag} {value}" for flag, value in flags.items() if value is not None]
    return " ".join(words)


def say(text: str) -> None:
    """A message on stderr, never wrapped: ids and commands stay copyable."""
    err.print(text, markup=False, highlight=False, soft_wrap=True)


@contextmanager
def sigint_flag() -> Iterator[threading.Event]:
    """Ctrl-C sets the yielded flag instead of raising, for as long as the block runs."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.signal(signal.SIGINT, lambda number, frame: flag.set())
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so no job is ever created without its record."""
    with sigint_flag() as interrupted:
        yield
    if interrupted.is_set():
        raise KeyboardInterrupt


@contextmanager
def api_errors() -> Iterator[None]:
    """OpenAI client errors as one line a user can act on."""
    import openai

    try:
        yield
    except openai.AuthenticationError:
        raise RaftError(
            "the server refused the API key (HTTP 401): check OPENAI_API_KEY or the key file"
        ) from None
    except openai.APIStatusError as exc:
        raise RaftError(f"OpenAI API error {exc.status_code}: {api_message(exc)}") from None
    except openai.APIConnectionError as exc:
        raise RaftError(f"cannot reach the OpenAI API: {exc}") from None


def api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        body = body["error"]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return exc.message
