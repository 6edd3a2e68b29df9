"""The benchmark table: printed with rich, and written to docs/benchmarks.md with the machine."""

from __future__ import annotations

import os
import platform
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.common import REPO, Result

PACKAGES = [
    "tiktoken",
    "chromadb",
    "sentence-transformers",
    "torch",
    "llama_cpp_python",
    "transformers",
    "trl",
    "peft",
    "httpx",
    "trafilatura",
]


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def _mark(result: Result) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[result.met]


def rows(results: list[Result]) -> list[list[str]]:
    return [
        [
            r.stage,
            r.measured,
            _number(r.value),
            _number(r.raw),
            _number(r.ratio),
            r.goal,
            _mark(r),
        ]
        for r in results
    ]


HEADER = ["stage", "measured", "raft", "raw", "ratio", "goal", ""]


def print_table(results: list[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*HEADER, title="raft benchmarks")
    for row in rows(results):
        table.add_row(*row)
    Console(width=200).print(table)
    for r in results:
        if r.note:
            print(f"- {r.stage}: {r.note}")


def machine() -> list[str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kb = int(handle.readline().split()[1])
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return [
        f"- machine: {os.cpu_count()} cores ({cpu}), {total_kb / 2**20:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; " + ", ".join(versions),
    ]


GPU_BEGIN, GPU_END = "<!-- gpucheck -->", "<!-- /gpucheck -->"


def gpu_section(text: str) -> list[str]:
    """The section `scripts/gpucheck` writes, markers included; kept by `scripts/bench`."""
    if GPU_BEGIN not in text or GPU_END not in text:
        return []
    start, end = text.index(GPU_BEGIN), text.index(GPU_END) + len(GPU_END)
    return ["", *text[start:end].splitlines(), ""]


def replace_gpu_section(path: Path, section: list[str]) -> None:
    """Put `section` (marker lines included) in place of the old one, or at the end."""
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    block = "\n".join(section)
    if GPU_BEGIN in text and GPU_END in text:
        start, end = text.index(GPU_BEGIN), text.index(GPU_END) + len(GPU_END)
        text = text[:start] + block + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


def update_markdown(results: list[Result], seconds: dict[str, float]) -> Path:
    """Replace the rows and notes of the stages just run in docs/benchmarks.md, keep the
    others, and say which stages were re-run when and where."""
    path = REPO / "docs" / "benchmarks.md"
    labels = {r.stage for r in results}
    text = path.read_text()
    kept = gpu_section(text)
    if kept:  # its own table must not be taken for the stage table
        text = text[: text.index(GPU_BEGIN)] + text[text.index(GPU_END) + len(GPU_END) :]
    lines = text.rstrip("\n").splitlines()
    table_end = max(n for n, line in enumerate(lines) if line.startswith("|")) + 1
    notes_end = len(lines) - (lines[-1] == "")

    def other(line: str, prefix: str) -> bool:
        return not any(line.startswith(prefix.format(label)) for label in labels)

    head = [line for line in lines[:table_end] if other(line, "| {} |")]
    notes = [line for line in lines[table_end:notes_end] if other(line, "- **{}**:")]
    stages = ", ".join(f"{stage} {s:.0f} s" for stage, s in seconds.items())
    updated = [
        f"- updated on {date.today().isoformat()}: {stages}, on "
        + machine()[0].removeprefix("- machine: ")
    ]
    at = next(n for n, line in enumerate(head) if line.startswith("| stage |"))
    head = head[: at - 1] + updated + head[at - 1 :]
    new_rows = ["| " + " | ".join(row) + " |" for row in rows(results)]
    new_notes = [f"- **{r.stage}**: {r.note}" for r in results if r.note]
    path.write_text("\n".join(head + new_rows + notes + new_notes + kept + [""]))
    return path


def write_markdown(results: list[Result], seconds: dict[str, float]) -> Path:
    path = REPO / "docs" / "benchmarks.md"
    kept = gpu_section(path.read_text()) if path.is_file() else []
    lines = [
        "# Benchmarks",
        "",
        "Written by `./scripts/bench` (the latest run); do not edit by hand. Each stage is "
        "measured against the raw work inside it, in the same run: a ratio compares raft "
        "with that raw reference, medians of repeats. Synthetic corpora are generated with a "
        "fixed seed.",
        "",
        f"Run on {date.today().isoformat()}:",
        "",
        *machine(),
        "- time per stage: "
        + ", ".join(f"{stage} {s:.0f} s" for stage, s in seconds.items())
        + f" (total {sum(seconds.values()) / 60:.1f} min)",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
        *("| " + " | ".join(row) + " |" for row in rows(results)),
        "",
        "## Notes",
        "",
        *(f"- **{r.stage}**: {r.note}" for r in results if r.note),
        *kept,
        "",
    ]
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines))
    return path
