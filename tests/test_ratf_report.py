"""`ratf report` on a small hand-written scored run: what a reader of report.md, the plots
and the terminal table actually sees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ratf.report import write_report
from ratf.terminal import print_table

REPLICAS = ["base", "raft"]
CONTROLS = ["oracle", "shuffled", "other_voice"]
PNG = b"\x89PNG\r\n\x1a\n"
ITEMS = [f"2023-10-17-talk#{n}" for n in range(5)]
REAL_ANSWER = "Tin mines taught me patience; the sea taught me the rest."


def cell(mean: float, low: float, high: float) -> dict:
    return {"mean": mean, "low": low, "high": high, "n": len(ITEMS)}


SUMMARY = {
    "persona": "sample",
    "target": "Hollis Penwarden",
    "run": "20261122-071500",
    "baseline": "base",
    "systems": REPLICAS + CONTROLS,
    "replicas": {
        "base": {"spec": "local", "memories": False},
        "raft": {"spec": "sft-20261120", "memories": True},
    },
    "controls": {
        "oracle": "the real answer itself",
        "shuffled": "the author's real answer to a different question of the same interview",
        "other_voice": "the interviewer's next question, as if it were the reply",
    },
    "n_items": len(ITEMS),
    "metrics": {
        "rouge_l": {
            "description": "ROUGE-L F1 against the real answer",
            "systems": {
                "base": cell(0.1234, 0.0912, 0.1567),
                "raft": cell(0.2012, 0.1633, 0.2406),
                "oracle": cell(1.0, 1.0, 1.0),
                "shuffled": cell(0.0871, 0.0611, 0.1102),
                "other_voice": cell(0.0412, 0.0203, 0.0655),
            },
            "vs_baseline": {"raft": cell(0.0778, 0.0401, 0.1123)},
            "controls_ordered": True,
        },
        "semantic": {
            "description": "cosine of MiniLM sentence embeddings",
            "systems": {
                "base": cell(0.4321, 0.3876, 0.4756),
                "raft": cell(0.4188, 0.3702, 0.4666),
                "oracle": cell(1.0, 1.0, 1.0),
                "shuffled": cell(0.2222, 0.1888, 0.2593),
                "other_voice": cell(0.3131, 0.2777, 0.3482),
            },
            "vs_baseline": {"raft": cell(-0.0133, -0.0551, 0.0298)},
            "controls_ordered": False,
        },
    },
    "judge": {
        "judge": "local",
        "pairwise": {"raft": {"win_rate": cell(0.7, 0.55, 0.85)}},
        "discrimination": {"picked_real": cell(0.6, 0.2, 1.0), "chance": 1 / 3},
    },
    "examples": [
        {
            "id": ITEMS[1],
            "question": "What did Cornwall give you?",
            "answer": REAL_ANSWER,
            "replies": {"base": "I like the coast.", "raft": "Patience, mostly, from the mines."},
        }
    ],
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "sample" / "ratf" / "runs" / SUMMARY["run"]
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(SUMMARY), encoding="utf-8")
    rows = [
        {"id": item, "system": system, "metric": metric, "value": 0.1 * n + 0.05 * s}
        for metric in SUMMARY["metrics"]
        for s, system in enumerate(REPLICAS + CONTROLS)
        for n, item in enumerate(ITEMS)
    ]
    (folder / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_report_shows_scores_differences_controls_judge_and_examples(run_dir: Path):
    paths = write_report(run_dir)
    report = paths["report"].read_text(encoding="utf-8")
    assert paths["report"] == run_dir / "report.md"
    assert "Hollis Penwarden" in report and "20261122-071500" in report
    assert "0.123 [0.091, 0.157]" in report and "0.201 [0.163, 0.241]" in report
    for name in ("base", "raft", "oracle", "shuffled", "other voice"):
        assert name in report
    assert re.search(r"\*\*\+0\.078 \[\+0\.040, \+0\.112\]\*\* ▲", report)
    assert "-0.013 [-0.055, +0.030]" in report and "**-0.013" not in report
    assert "⚠ **semantic** does not separate" in report and "read it with care" in report
    assert "⚠ **rouge_l**" not in report
    assert "0.700 [0.550, 0.850]" in report and "0.333" in report
    assert f"> {REAL_ANSWER}" in report and "> Patience, mostly, from the mines." in report
    assert "bootstrap" in report and "higher is closer" in report
    assert not list(run_dir.glob(".*.tmp")) and not list((run_dir / "plots").glob(".*.tmp"))


def test_report_links_plots_that_are_valid_pngs(run_dir: Path):
    paths = write_report(run_dir)
    report = paths["report"].read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert set(links) == {"plots/rouge_l.png", "plots/semantic.png", "plots/vs_baseline.png"}
    for link in links:
        data = (run_dir / link).read_bytes()
        assert data[:8] == PNG and len(data) > 5_000, link
    assert {paths[k] for k in ("rouge_l", "semantic", "vs_baseline")} == {
        run_dir / link for link in links
    }


def test_print_table_shows_every_system_with_full_numbers(capsys: pytest.CaptureFixture):
    print_table(SUMMARY)
    out = capsys.readouterr().out
    for name in ("base", "raft", "oracle", "shuffled", "other voice"):
        assert name in out
    for text in ("0.123 [0.091, 0.157]", "0.432 [0.388, 0.476]", "0.087 [0.061, 0.110]"):
        assert text in out
    assert "…" not in out
    assert out.index("raft") < out.index("oracle")
    warnings = [line for line in out.splitlines() if "read it with care" in line]
    assert len(warnings) == 1 and "semantic" in warnings[0]


LIKELIHOOD = {
    "description": "bits per UTF-8 byte of the real answer (lower is closer)",
    "lower_is_better": True,
    "baseline": "base",
    "systems": {
        "base": {
            "bits_per_byte": cell(1.5012, 1.4011, 1.6013),
            "shuffled": cell(1.6234, 1.5121, 1.7345),
            "gap": cell(0.1222, 0.0511, 0.1933) | {"excludes_zero": True},
            "nats_per_token": cell(3.1, 2.9, 3.3),
            "tokens": 400,
        },
        "raft": {
            "bits_per_byte": cell(1.3456, 1.2567, 1.4321),
            "shuffled": cell(1.3501, 1.2611, 1.4402),
            "gap": cell(0.0051, -0.0301, 0.0398) | {"excludes_zero": False},
            "nats_per_token": cell(2.8, 2.6, 3.0),
            "tokens": 400,
            "vs_baseline": cell(-0.1556, -0.2102, -0.1011) | {"excludes_zero": True},
        },
        "remote": {"n/a": "the OpenAI chat API returns no log-probabilities of a given answer"},
    },
}


def with_likelihood(likelihood: dict) -> dict:
    """SUMMARY with a third, remote replica and the given likelihood section."""
    summary = json.loads(json.dumps(SUMMARY))
    summary["systems"] = [*REPLICAS, "remote", *CONTROLS]
    summary["replicas"]["remote"] = {"spec": "openai:gpt-4.1-mini", "memories": True}
    summary["likelihood"] = likelihood
    return summary


def test_report_has_a_likelihood_section_where_lower_is_closer(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(with_likelihood(LIKELIHOOD)))
    report = write_report(folder)["report"].read_text(encoding="utf-8")
    section = report[report.index("## Answer likelihood") :]
    assert "lower is closer" in section.lower() and "unlike every metric above" in section
    assert "1.501 [1.401, 1.601]" in section and "1.623 [1.512, 1.734]" in section
    assert "+0.122 [+0.051, +0.193] ✓" in section  # base conditions on the question
    assert "+0.005 [-0.030, +0.040] |" in section  # raft's gap is unmarked
    assert re.search(r"\*\*-0\.156 \[-0\.210, -0\.101\]\*\* ▲", section)  # closer than base
    remote = next(line for line in section.splitlines() if line.startswith("| **remote**"))
    assert remote.count("n/a") == 4
    assert "- **remote**: the OpenAI chat API returns no log-probabilities" in section


def test_print_table_adds_a_bits_per_byte_column_with_na_and_the_gaps(capsys):
    print_table(with_likelihood(LIKELIHOOD))
    out = capsys.readouterr().out
    assert "bits/byte ↓" in out and "lower is closer" in out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("│")}
    assert "1.346 [1.257, 1.432]" in rows["raft"] and "n/a" in rows["remote"]
    words = " ".join(out.split())  # the lines below the table wrap at the console's width
    assert "base +0.122 [+0.051, +0.193] ✓" in words
    assert "bits/byte n/a for remote: the OpenAI chat API" in words


def test_skipped_likelihood_is_said_and_adds_no_column(capsys, tmp_path: Path):
    summary = with_likelihood({"skipped": "ratf score --no-likelihood"})
    print_table(summary)
    out = capsys.readouterr().out
    assert "bits/byte" not in out and "answer likelihood: skipped" in out
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(summary))
    report = write_report(folder)["report"].read_text(encoding="utf-8")
    assert "Skipped (`ratf score --no-likelihood`)" in report
