"""`scripts/gpucheck` with TINY=1: the GPU check's every step, on a tiny model, on the CPU."""

from __future__ import annotations

import os
import subprocess

from benchmarks.report import GPU_BEGIN, GPU_END
from tests.helpers import REPO

OTHER = "# Benchmarks\n\n| stage | measured |\n|---|---|\n| fetch | kept |\n\n## Notes\n\n- kept\n"


def test_tiny_gpucheck_trains_scores_and_writes_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(OTHER)
    done = subprocess.run(
        [str(REPO / "scripts" / "gpucheck"), "--doc", str(doc)],
        env={**os.environ, "TINY": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = doc.read_text()
    assert text.startswith(OTHER.rstrip("\n"))  # the stage table and notes are kept
    section = text[text.index(GPU_BEGIN) : text.index(GPU_END)]
    assert "TINY=1" in section and "| goal |" not in section  # no goal judged on a toy
    rows = {
        line.split(" | ")[0].removeprefix("| "): line.split(" | ")
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| run", "|---"))
    }
    assert len(rows) == 5, section
    for name, cells in rows.items():
        assert float(cells[1].replace(",", "")) > 0, name  # tokens/s
    old = next(cells for name, cells in rows.items() if "old GPU settings" in name)
    new = rows["raft ft:run (defaults)"]
    # Samples packed by tokens pad less than batches of 4 samples padded to the longest.
    assert float(new[2].rstrip("%")) < float(old[2].rstrip("%"))
    assert float(new[2].rstrip("%")) <= 2.0


def test_bench_keeps_the_gpu_section_when_it_rewrites_the_doc(tmp_path, monkeypatch):
    from benchmarks import report
    from benchmarks.common import Result

    (tmp_path / "docs").mkdir()
    doc = tmp_path / "docs" / "benchmarks.md"
    section = [GPU_BEGIN, "## GPU check", "", "| run | tokens/s |", "|---|---|", "| x | 1 |"]
    section.append(GPU_END)
    doc.write_text(OTHER)
    report.replace_gpu_section(doc, ["<!-- gpucheck -->", "an older run", "<!-- /gpucheck -->"])
    report.replace_gpu_section(doc, section)  # a second gpucheck run replaces the first
    assert "an older run" not in doc.read_text() and doc.read_text().startswith(OTHER)
    monkeypatch.setattr(report, "REPO", tmp_path)
    row = Result("chunk", "tokens/s", 2.0, 1.0, 2.0, ">= 1x", True)

    report.update_markdown([row], {"chunk": 1.0})
    updated = doc.read_text()
    assert "| chunk | tokens/s | 2 |" in updated and "| fetch | kept |" in updated
    assert updated.count(GPU_BEGIN) == 1 and "| x | 1 |" in updated
    # The GPU table stays below the notes, not inside the stage table.
    assert updated.index("| chunk |") < updated.index("## Notes") < updated.index(GPU_BEGIN)

    report.write_markdown([row], {"chunk": 1.0})
    rewritten = doc.read_text()
    assert "| fetch | kept |" not in rewritten  # a full run rewrites the stage table
    assert rewritten.count(GPU_BEGIN) == 1 and "| x | 1 |" in rewritten
