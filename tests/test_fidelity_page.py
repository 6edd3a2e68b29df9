"""`scripts/study --page-only`: docs/fidelity.md written from a study.json of both personas,
with the ceilings, the oracle-p round and issue 29's goals met or missed by how much."""

from __future__ import annotations

import json

from studies.fidelity import main
from studies.fidelity_cells import system_rows

# Bits per byte per system, the same shift on every item, so each paired difference is exact.
SAMPLE = {
    "base": 1.40, "base+mem": 1.34, "base+oracle": 1.20,
    "plain": 1.30, "plain+mem": 1.29, "plain+oracle": 1.15,
    "raft-nomem": 1.31, "raft": 1.32, "raft+oracle": 1.13,
    "raft-p0.5-nomem": 1.30, "raft-p0.5": 1.27, "raft-p0.5+oracle": 1.12,
}  # fmt: skip
INES = {system: value + 0.1 for system, value in SAMPLE.items()} | {"raft": 1.405}


def persona(bits: dict[str, float], items: int) -> dict:
    noise = [0.01 * (i % 3) for i in range(items)]  # the same on every system: paired away
    scores = {
        "bits_per_byte": {
            system: {f"q{i}": value + noise[i] for i in range(items)}
            for system, value in bits.items()
        }
    }
    stats = {"memories": {"retrieved": 8, "useful_by_question": 8}, "quality": {}}
    return {
        "steps": [{"command": "raft ft:run x --dataset plain --epochs 2", "seconds": 301.4}],
        "overlap": {"training": 0.204, "held-out": 0.152},
        "rounds": [{"style": "extractive", "stats": stats}],
        "oracle_p": {
            "p": 0.5,
            "label": "raft-p0.5",
            "model": "sft-2",
            "stats": stats | {"samples": 11, "oracle_samples": 7},
        },
        "final": {"summary": {"n_items": items}, "scores": scores},
        "floors": [["keep every retrieved memory", 0.5, 1.0, 8]],
        "trained": [{"id": "sft-2", "dataset": "raft", "metrics": {"steps": 4, "samples": 9}}],
    }


def test_page_only_writes_both_personas_ceilings_and_goals(tmp_path):
    assert set(SAMPLE) == set(system_rows("raft-p0.5"))
    settings = {"k": 2, "style": "extractive", "styles": ["extractive"], "oracle_p": 0.5}
    saved = {
        "settings": settings,
        "personas": {"sample": persona(SAMPLE, 14), "ines": persona(INES, 6)},
    }
    (tmp_path / "study.json").write_text(json.dumps(saved))
    page = tmp_path / "fidelity.md"
    main(["--page-only", "--data", str(tmp_path), "--page", str(page)])
    text = page.read_text()
    lines = text.splitlines()
    # Goals: sample base+mem − base = −0.06 (met), raft − plain = +0.02 (missed by the
    # interval's upper end), raft closes (1.31 − 1.32)/(1.31 − 1.13) < 0 of its gap; ines
    # raft − plain = +0.005, within +0.01.
    goals = [
        line for line in lines if line.startswith(("| sample | `", "| sample | ≥", "| ines | `"))
    ]
    assert goals[0].endswith("| -0.060 [-0.060, -0.060] | **met** |")
    assert goals[1].endswith("missed: the interval's upper end is +0.020 (mean +0.020) |")
    assert "missed by 0.389 (a third is 0.333)" in goals[2]
    assert goals[3].endswith("| +0.005 [+0.005, +0.005] | **met** |")
    assert "`sample`, **flattering**" in text and "`ines`, **realistic**" in text
    assert "| `base+oracle` (ceiling) |" in text and "| `raft-p0.5+oracle` (ceiling) |" in text
    gap_row = next(line for line in lines if line.startswith("| `base+mem` | `base` → "))
    assert gap_row.endswith("| 0.300 [0.300, 0.300] | 0.300 [0.300, 0.300] |")
    assert any(line.startswith("| `raft-p0.5` − `raft` |") and "-0.050" in line for line in lines)
    assert "(`sample`: 7 of 11 samples)" in text
    assert "would be tuning on the held-out interview" in text
    assert "Rounds run: `extractive` only" in text
    assert "| `raft ft:run x --dataset plain --epochs 2` | 301 |" in text
    assert "Both personas: **603 s**." in text
