"""RATF runs for the report page: which there are, and one's `report.md` as HTML."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from raft.paths import Persona
from ratf.runner import check_run_name


def list_runs(persona: Persona) -> list[dict[str, Any]]:
    """Runs with replies, newest first, and whether each is scored and reported."""
    runs = persona.ratf / "runs"
    found = (
        sorted((p.parent for p in runs.glob("*/run.json")), reverse=True) if runs.is_dir() else []
    )
    listed = []
    for folder in found:
        made = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        listed.append(
            {
                "run": folder.name,
                "systems": list(made.get("replicas", {})),
                "scored": (folder / "summary.json").is_file(),
                "reported": (folder / "report.md").is_file(),
            }
        )
    return listed


def report_html(persona: Persona, run: str) -> str | None:
    """The run's `report.md` rendered (raw HTML in it is escaped), with its plots inlined
    as data URIs so that the page needs no further request; None before `ratf report`."""
    from markdown_it import MarkdownIt

    folder = persona.ratf / "runs" / check_run_name(run, persona.ratf / "runs")
    report = folder / "report.md"
    if not report.is_file():
        return None
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(report.read_text(encoding="utf-8"))
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("src", inline_plot(folder, str(child.attrGet("src") or "")))
    return md.renderer.render(tokens, md.options, {})


def inline_plot(folder: Path, src: str) -> str:
    """A PNG of the run folder as a data URI; anything else is dropped."""
    path = (folder / src).resolve()
    if path.suffix != ".png" or not path.is_relative_to(folder.resolve()) or not path.is_file():
        return ""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
