"""The web pages of `raft serve`: chat, compare, report, blind test, dataset review.

Static HTML, CSS and JavaScript shipped in the package (no build step, nothing fetched at
run time). The chat and compare pages call `/v1/chat/completions` like any client; the
others read small JSON endpoints under `/api/`. Pages themselves hold no data, so they are
served without the API key (a page asks for the key when the API refuses it); the blind
test's endpoints take a rater's token instead of the key, so raters need no key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import Request  # FastAPI resolves handler annotations in module scope

from raft.errors import UsageError
from raft.paths import DATASETS, Persona
from raft.review import mark
from raft.serving.errors import ApiError, BadRequest, NotFound
from raft.serving.request import parse_json, read_body
from raft.web.blind import Blind
from raft.web.reports import list_runs, report_html
from raft.web.samples import list_samples, sample_memories

STATIC = Path(__file__).parent / "static"
PAGES = {
    "/": "chat.html",
    "/compare": "compare.html",
    "/report": "report.html",
    "/blind": "blind.html",
    "/samples": "samples.html",
}
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
HEADERS = {  # nothing from elsewhere, no framing (a blind test could be clickjacked)
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a rater's link carries their token
}
MAX_API_BODY = 10_000
PAGE_SIZE = 50


class Forbidden(ApiError):
    status = 403


class Conflict(ApiError):
    status = 409


class Pages:
    """The pages and their endpoints for one persona; `blind` is the blind test of a run,
    or None when there is no run to build one from."""

    def __init__(self, persona: Persona, blind: Blind | None = None):
        self.persona = persona
        self.blind = blind

    @staticmethod
    def public(method: str, path: str) -> bool:
        """Served without the API key: the pages, their files, and the blind test."""
        page = method in ("GET", "HEAD") and (path in PAGES or path.startswith("/static/"))
        return page or path.startswith("/api/blind/")

    def mount(self, app: Any) -> None:
        from fastapi.responses import FileResponse

        def page_file(name: str) -> FileResponse:
            path = STATIC / name
            if "/" in name or path.suffix not in TYPES or not path.is_file():
                raise NotFound("no such file")
            return FileResponse(path, media_type=TYPES[path.suffix], headers=HEADERS)

        for route, name in PAGES.items():
            app.add_api_route(route, lambda name=name: page_file(name), methods=["GET"])
        app.add_api_route("/static/{name}", page_file, methods=["GET"])

        @app.get("/api/info")
        def info() -> dict[str, Any]:
            from raft.target import display_name

            blind = self.blind
            return {
                "persona": self.persona.name,
                "target": display_name(self.persona),
                "blind": {"run": blind.run, "items": len(blind.items)} if blind else None,
            }

        @app.get("/api/runs")
        def runs() -> list[dict[str, Any]]:
            return list_runs(self.persona)

        @app.get("/api/runs/{run}")
        def report(run: str) -> dict[str, Any]:
            try:
                html = report_html(self.persona, run)
            except UsageError as exc:
                raise NotFound(str(exc)) from None
            return {"run": run, "html": html}

        @app.get("/api/samples")
        def samples(dataset: str = "raft", offset: int = 0, limit: int = PAGE_SIZE):
            if dataset not in DATASETS:
                raise BadRequest(f"`dataset` must be one of {', '.join(DATASETS)}")
            if offset < 0 or not 1 <= limit <= 500:
                raise BadRequest("need offset >= 0 and 1 <= limit <= 500")
            return list_samples(self.persona, dataset, offset, limit)

        @app.post("/api/review")
        async def review(request: Request) -> dict[str, Any]:
            body = parse_json(await read_body(request, MAX_API_BODY))
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            dataset, sample, memory = (
                body.get("dataset", "raft"),
                body.get("sample"),
                body.get("memory"),
            )
            if dataset not in DATASETS or not isinstance(sample, str) or not sample:
                raise BadRequest("need `dataset` (raft or plain) and a `sample` id")
            if memory is not None and not isinstance(memory, str):
                raise BadRequest("`memory` must be a chunk id")
            if not isinstance(body.get("drop"), bool):
                raise BadRequest("`drop` must be true or false")
            folder = self.persona.dataset(dataset)
            known = await asyncio.to_thread(sample_memories, folder)
            where = f"{folder.relative_to(self.persona.root)}/raft.jsonl"
            if sample not in known:
                raise NotFound(f"no sample {sample!r} in {where}", "unknown_sample")
            if memory is not None and memory not in known[sample]:
                raise NotFound(f"sample {sample!r} has no memory {memory!r}", "unknown_memory")
            await asyncio.to_thread(mark, folder, sample, memory, body["drop"])
            # Only the mark's new state: the whole review grows with every mark.
            return {"dataset": dataset, "sample": sample, "memory": memory, "drop": body["drop"]}

        @app.get("/api/blind/state")
        def blind_state(rater: str = "") -> dict[str, Any]:
            return self.blind_call(lambda blind: blind.state(rater))

        @app.post("/api/blind/judge")
        async def blind_judge(request: Request) -> dict[str, Any]:
            body = parse_json(await read_body(request, MAX_API_BODY))
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            return await asyncio.to_thread(
                self.blind_call,
                lambda blind: blind.judge(body.get("rater"), body.get("item"), body.get("choice")),
            )

    def blind_call(self, call: Any) -> dict[str, Any]:
        """A blind-test call, its refusals as API errors."""
        if self.blind is None:
            message = f"no blind test: run `ratf run {self.persona.name}`, then restart the server"
            raise NotFound(message, "no_blind_test")
        try:
            return call(self.blind)
        except PermissionError as exc:
            raise Forbidden(str(exc), "not_a_rater") from None
        except FileExistsError as exc:
            raise Conflict(str(exc), "already_judged") from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
