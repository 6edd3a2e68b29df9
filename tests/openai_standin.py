"""A stand-in for OpenAI's files and fine-tuning job endpoints, in their real REST shape.

The one paid API with no local equivalent (design.md), so the real `openai` client talks to
this over loopback. A job advances one state per retrieve (validating_files -> queued ->
running -> succeeded), so tests control time by how often the client polls; `hold()` keeps
jobs in `running` until `release.set()`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# At module level: FastAPI resolves the handlers' string annotations in these globals.
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MIN_EXAMPLES = 10  # OpenAI refuses smaller training files
ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
NEXT = {"validating_files": "queued", "queued": "running", "running": "succeeded"}


class StandIn:
    """State of the fake API: uploaded files, jobs, their events, and counters for tests."""

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key  # None: any bearer token is accepted
        self.url = ""  # the /v1 base URL, once served
        self.lock = threading.Lock()
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.create_bodies: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.retrieves: Counter[str] = Counter()
        self.keys_seen: set[str] = set()
        self.release = threading.Event()
        self.release.set()
        self.ids = itertools.count(1)

    def hold(self) -> None:
        """Keep jobs in `running` until `release.set()`."""
        self.release.clear()

    def uploads(self, filename: str) -> int:
        return sum(f["filename"] == filename for f in self.files.values())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-standin{next(self.ids):06d}"

    def add_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        with self.lock:
            file = {
                "id": self.new_id("file"),
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
                "expires_at": None,
                "status_details": None,
            }
            self.files[file["id"]] = file
            self.contents[file["id"]] = content
            return file

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        given = (method.get("supervised") or {}).get("hyperparameters") or {}
        hyper = {k: given.get(k, "auto") for k in ("batch_size", "learning_rate_multiplier")}
        hyper["n_epochs"] = given.get("n_epochs", "auto")
        with self.lock:
            job = {
                "id": self.new_id("ftjob"),
                "object": "fine_tuning.job",
                "created_at": int(time.time()),
                "error": None,
                "fine_tuned_model": None,
                "finished_at": None,
                "hyperparameters": hyper,
                "model": body["model"],
                "organization_id": "org-standin",
                "result_files": [],
                "seed": body.get("seed") or 42,
                "status": "validating_files",
                "trained_tokens": None,
                "training_file": body["training_file"],
                "validation_file": body.get("validation_file"),
                "estimated_finish": None,
                "integrations": [],
                "metadata": body.get("metadata"),
                "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
                "user_provided_suffix": body.get("suffix"),
            }
            self.jobs[job["id"]] = job
            self.create_bodies[job["id"]] = body
            self.events[job["id"]] = []
            self.emit(job, f"Created fine-tuning job: {job['id']}")
            self.emit(job, f"Validating training file: {job['training_file']}")
            return job

    def emit(
        self, job: dict[str, Any], message: str, data: dict | None = None, level: str = "info"
    ) -> None:
        self.events[job["id"]].append(
            {
                "object": "fine_tuning.job.event",
                "id": self.new_id("ftevent"),
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data or {},
                "type": "metrics" if data else "message",
            }
        )

    def emit_step(self, job: dict[str, Any], step: int, train: float, valid: float) -> None:
        data = {"step": step, "total_steps": 2, "train_loss": train, "valid_loss": valid}
        self.emit(job, f"Step {step}/2: training loss={train:.3f}", data)

    def advance(self, job_id: str) -> dict[str, Any]:
        """One retrieve: the job moves on one state (running waits for `release`)."""
        with self.lock:
            job = self.jobs[job_id]
            self.retrieves[job_id] += 1
            state = job["status"]
            if state == "validating_files":
                self.validate(job)
            elif state == "queued":
                self.start(job)
            elif state == "running" and self.release.is_set():
                self.succeed(job)
            return job

    def validate(self, job: dict[str, Any]) -> None:
        problem = check_training(self.contents[job["training_file"]], MIN_EXAMPLES)
        code = "invalid_training_file"
        if not problem and job["validation_file"]:
            problem = check_training(self.contents[job["validation_file"]], 1)
            code = "invalid_validation_file"
        if problem:
            kind = code.removeprefix("invalid_").replace("_", " ")
            message = f"The job failed due to an invalid {kind}. {problem}"
            job["error"] = {"code": code, "message": message, "param": code[8:]}
            self.finish(job, "failed")
            self.emit(job, message, level="error")
            return
        job["status"] = "queued"
        self.emit(job, "Files validated, moving job to queued state")

    def start(self, job: dict[str, Any]) -> None:
        hyper = job["hyperparameters"]
        defaults = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}
        for key, value in defaults.items():
            if hyper[key] == "auto":
                hyper[key] = value
        job["status"] = "running"
        self.emit(job, "Fine-tuning job started")
        self.emit_step(job, 1, 1.25, 1.5)

    def succeed(self, job: dict[str, Any]) -> None:
        self.emit_step(job, 2, 0.75, 0.9)
        suffix = job["user_provided_suffix"] or ""
        job["fine_tuned_model"] = f"ft:{job['model']}:standin:{suffix}:{job['id'][-6:]}"
        lines = self.contents[job["training_file"]].count(b"\n")
        job["trained_tokens"] = 100 * lines * job["hyperparameters"]["n_epochs"]
        self.finish(job, "succeeded")
        self.emit(job, f"New fine-tuned model created: {job['fine_tuned_model']}")
        self.emit(job, "The job has successfully completed")

    def finish(self, job: dict[str, Any], status: str) -> None:
        job["status"] = status
        job["finished_at"] = int(time.time())

    def cancel(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self.jobs[job_id]
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                self.finish(job, "cancelled")
                self.emit(job, "Fine-tuning job cancelled")
            return job

    def page_of_events(self, job_id: str, after: str | None, limit: int) -> dict[str, Any]:
        """Newest first; `after` is a cursor towards older events, as OpenAI pages them."""
        with self.lock:
            newest_first = self.events[job_id][::-1]
        ids = [e["id"] for e in newest_first]
        start = ids.index(after) + 1 if after in ids else 0
        data = newest_first[start : start + limit]
        return {"object": "list", "data": data, "has_more": start + limit < len(newest_first)}


def check_training(content: bytes, minimum: int) -> str:
    """What OpenAI's file validation would say about a chat fine-tuning file ("" if fine)."""
    lines = [line for line in content.decode("utf-8", "replace").splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        problem = check_example(line)
        if problem:
            return f"Invalid file format. Example {number}: {problem}"
    if len(lines) < minimum:
        return f"Training file has {len(lines)} example(s), but must have at least {minimum}"
    return ""


def check_example(line: str) -> str:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return "not valid JSON"
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        return "missing the 'messages' list"
    for index, message in enumerate(messages, 1):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"message {index} has an unrecognized role"
        if not isinstance(message.get("content"), str):
            return f"message {index} has no text content"
        if message.get("weight", 1) not in (0, 1):
            return f"message {index} has a weight other than 0 or 1"
    if not any(m["role"] == "assistant" for m in messages):
        return "contains no assistant messages"
    return ""


def form_fields(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename, bytes), byte for byte."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if not boundary:
        return {}
    fields = {}
    for part in body.split(b"--" + boundary.group(1).encode())[1:-1]:
        head, _, value = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        filename = re.search(rb'filename="([^"]*)"', head)
        if name:
            fields[name.group(1).decode()] = (
                filename.group(1).decode() if filename else None,
                value.removesuffix(b"\r\n"),
            )
    return fields


def api_error(status: int, message: str, code: str | None = None, param: str | None = None):
    kind = "invalid_request_error"
    error = {"message": message, "type": kind, "param": param, "code": code}
    return JSONResponse({"error": error}, status_code=status)


def build_app(standin: StandIn):
    """The FastAPI app serving `standin` under /v1."""
    app = FastAPI()

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""
        if not key:
            return api_error(401, "You didn't provide an API key.", "missing_api_key")
        standin.keys_seen.add(key)
        if standin.api_key is not None and key != standin.api_key:
            masked = f"{key[:3]}{'*' * 8}{key[-4:]}"
            return api_error(401, f"Incorrect API key provided: {masked}.", "invalid_api_key")
        return await call_next(request)

    @app.post("/v1/files")
    async def upload(request: Request):
        fields = form_fields(await request.body(), request.headers.get("content-type", ""))
        if "file" not in fields or "purpose" not in fields:
            return api_error(400, "'file' and 'purpose' are required", param="file")
        filename, content = fields["file"]
        return standin.add_file(filename or "upload", fields["purpose"][1].decode(), content)

    @app.get("/v1/files/{file_id}")
    def get_file(file_id: str):
        if file_id not in standin.files:
            return api_error(404, f"No such File object: {file_id}", param="id")
        return standin.files[file_id]

    @app.post("/v1/fine_tuning/jobs")
    async def create(request: Request):
        body = await request.json()
        for param in ("training_file", "validation_file"):
            file_id = body.get(param)
            if (param == "training_file" or file_id) and file_id not in standin.files:
                return api_error(400, f"invalid {param}: {file_id}", param=param)
        if not body.get("model"):
            return api_error(400, "model is required", param="model")
        return standin.create_job(body)

    @app.get("/v1/fine_tuning/jobs")
    def list_jobs(limit: int = 20):
        data = list(standin.jobs.values())[::-1][:limit]
        return {"object": "list", "data": data, "has_more": len(standin.jobs) > limit}

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve(job_id: str):
        if job_id not in standin.jobs:
            return api_error(404, f"Could not find fine-tune: {job_id}", "fine_tune_not_found")
        return standin.advance(job_id)

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    def events(job_id: str, after: str | None = None, limit: int = 20):
        if job_id not in standin.jobs:
            return api_error(404, f"Could not find fine-tune: {job_id}", "fine_tune_not_found")
        return standin.page_of_events(job_id, after, limit)

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel(job_id: str):
        if job_id not in standin.jobs:
            return api_error(404, f"Could not find fine-tune: {job_id}", "fine_tune_not_found")
        return standin.cancel(job_id)

    return app


@contextmanager
def serving(standin: StandIn) -> Iterator[str]:
    """Serve the stand-in on 127.0.0.1; yields its /v1 base URL."""
    from tests.helpers import serve_app

    with serve_app(build_app(standin)) as url:
        standin.url = url
        yield url
