"""The bundled sample persona is rich enough for retrieval to mean something."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date

from tests.helpers import REPO

SAMPLE = REPO / "data" / "sample"


def essay_dates() -> list[date]:
    dates = []
    for path in sorted((SAMPLE / "essays").glob("*.md")):
        head = path.read_text(encoding="utf-8").split("---")[1]
        match = re.search(r"^date:\s*(\d{4}-\d{2}-\d{2})\s*$", head, re.MULTILINE)
        assert match and re.search(r"^title:\s*\S", head, re.MULTILINE), path
        dates.append(date.fromisoformat(match[1]))
    return dates


def interviews(folder: str) -> list[dict]:
    return [
        json.loads(p.read_text(encoding="utf-8")) for p in sorted((SAMPLE / folder).glob("*.json"))
    ]


def test_sample_persona_has_the_promised_shape():
    config = tomllib.loads((SAMPLE / "persona.toml").read_text())
    assert config["name"] and config["sources"] == ["essays"]
    dates = essay_dates()
    assert len(dates) >= 30
    assert (max(dates) - min(dates)).days >= 2 * 365
    training, held_out = interviews("transcripts"), interviews("benchmark")
    assert len(training) >= 4 and len(held_out) >= 1
    for interview in training + held_out:
        assert interview["participants"]["a"] == config["name"]
        assert len(interview["exchanges"]) >= 10
        assert all(
            len(pair) == 2 and all(s.strip() for s in pair) for pair in interview["exchanges"]
        )
    # Some writing postdates some interviews, so date filtering has something to exclude.
    assert any(d > date.fromisoformat(i["date"]) for i in training for d in dates)
    assert {i["url"] for i in training}.isdisjoint(i["url"] for i in held_out)
