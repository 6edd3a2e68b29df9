"""The human blind test: judgements as the web page appends them, read back, summarized
with scipy's binomial test, and shown by `ratf score` and `ratf report`."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from scipy.stats import binomtest

from raft.errors import UsageError
from raft.paths import Persona
from ratf.human import (
    AUTHOR,
    Judgement,
    append_judgement,
    human_file,
    human_path,
    read_judgements,
    summarize_human,
)
from tests.helpers import run_cli

AT = "2026-11-22T07:15:00Z"
ORDERS = [["base", AUTHOR, "raft"], [AUTHOR, "raft", "base"], ["raft", "base", AUTHOR]]
# Ten judgements of three answers each: seven right, base taken for the author twice,
# raft once.
PICKS = [AUTHOR] * 7 + ["base", "base", "raft"]


def judgement(rater: str, item: str, picked: str, shown: list[str] | None = None) -> Judgement:
    return Judgement(rater, item, shown or ORDERS[len(item) % 3], picked, AT)


def line(rater: str, item: str, picked: str, shown: list[str] | None = None) -> str:
    return json.dumps(judgement(rater, item, picked, shown).to_row()) + "\n"


def ten_lines(items: list[str] | None = None) -> list[str]:
    """Five raters, two items each (or ten items of two raters): seven right."""
    items = items or [f"talk#{n}" for n in range(10)]
    raters = [f"rater-{n // 2 + 1}" for n in range(10)] if len(items) == 2 else None
    return [
        line(raters[n] if raters else f"rater-{n % 2 + 1}", items[n % len(items)], picked)
        for n, picked in enumerate(PICKS)
    ]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_seven_of_ten_over_three_answers_is_above_chance(tmp_path: Path):
    judgements = read_judgements(write_lines(tmp_path / "run.jsonl", ten_lines()))
    assert len(judgements) == 10 and sum(j.correct for j in judgements) == 7
    human = summarize_human(judgements)
    test = binomtest(7, 10, 1 / 3)
    interval = test.proportion_ci(confidence_level=0.95, method="wilson")
    assert human["accuracy"] == {
        "mean": 0.7,
        "low": pytest.approx(interval.low),
        "high": pytest.approx(interval.high),
        "n": 10,
        "correct": 7,
    }
    assert human["accuracy"]["low"] == pytest.approx(0.3968, abs=1e-4)
    assert human["chance"] == pytest.approx(1 / 3)
    assert human["p_value"] == pytest.approx(test.pvalue)
    assert human["verdict"] == "above chance"
    assert (human["judgements"], human["raters"], human["items"]) == (10, 2, 10)
    assert human["per_rater"] == {
        "rater-1": {"judgements": 5, "correct": 4},
        "rater-2": {"judgements": 5, "correct": 3},
    }
    base = human["systems"]["base"]
    assert (base["shown"], base["picked"], base["rate"]) == (10, 2, 0.2)
    assert base["low"] == pytest.approx(binomtest(2, 10).proportion_ci(method="wilson").low)
    assert human["systems"]["raft"]["rate"] == 0.1
    assert AUTHOR not in human["systems"]
    json.dumps(human)  # goes into summary.json as it is


def test_verdicts_near_and_below_chance():
    def verdict(right: int) -> str:
        picks = [AUTHOR] * right + ["base"] * (10 - right)
        return summarize_human([judgement("r", f"i{n}", p) for n, p in enumerate(picks)])["verdict"]

    assert verdict(4) == "not distinguishable from chance"
    assert verdict(0) == "below chance"
    assert summarize_human([]) is None


def test_only_a_raters_first_judgement_of_an_item_counts(tmp_path: Path):
    lines = [
        line("rater-1", "talk#0", "base"),
        line("rater-1", "talk#0", AUTHOR),  # changed their mind: ignored
        line("rater-2", "talk#0", AUTHOR),  # another rater, same item: counts
    ]
    judgements = read_judgements(write_lines(tmp_path / "run.jsonl", lines))
    assert [(j.rater, j.picked) for j in judgements] == [("rater-1", "base"), ("rater-2", AUTHOR)]
    assert summarize_human(judgements)["accuracy"]["correct"] == 1


def test_a_last_line_cut_short_is_skipped_with_a_warning(tmp_path: Path, capsys):
    path = write_lines(tmp_path / "run.jsonl", ten_lines())
    with open(path, "a") as handle:
        handle.write(line("rater-3", "talk#0", AUTHOR)[:30])
    assert len(read_judgements(path)) == 10
    assert f"warning: {path}:11: skipped an unfinished last line" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        "not json\n",
        json.dumps({"rater": "r", "item": "i", "shown": ["base", AUTHOR], "at": AT}) + "\n",
        line("r", "i", "raft", ["base", AUTHOR]),  # picked an answer not shown
        line("r", "i", "base", ["base", "raft"]),  # the author's answer not shown
        "[" * 100_000 + "]" * 100_000 + "\n",  # nested past what json's decoder takes
    ],
)
def test_a_bad_line_inside_the_file_names_file_and_line(tmp_path: Path, bad: str):
    path = write_lines(tmp_path / "run.jsonl", ten_lines()[:1] + [bad] + ten_lines()[1:])
    with pytest.raises(UsageError, match=rf"^{re.escape(str(path))}:2: not a judgement"):
        read_judgements(path)


def test_a_missing_file_has_no_judgements(tmp_path: Path):
    assert read_judgements(tmp_path / "none.jsonl") == []


def test_judgements_round_trip_through_their_row():
    first = judgement("rater-1", "talk#0", "base")
    assert Judgement.from_row(json.loads(json.dumps(first.to_row()))) == first
    assert not first.correct and judgement("r", "i", AUTHOR).correct


def test_paths_follow_the_run_folder(tmp_path: Path):
    persona = Persona("sample", tmp_path / "sample")
    run = persona.ratf / "runs" / "20261122-071500"
    assert human_file(run) == persona.ratf / "human" / "20261122-071500.jsonl"
    assert human_path(persona, "20261122-071500") == human_file(run)
    with pytest.raises(UsageError):
        human_path(persona, "../../elsewhere")


def test_concurrent_appends_leave_every_line_whole(tmp_path: Path):
    path = tmp_path / "human" / "run.jsonl"

    def rater(number: int) -> None:
        for item in range(25):
            append_judgement(path, judgement(f"rater-{number}", f"talk#{item}", AUTHOR))

    threads = [threading.Thread(target=rater, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 200 and all(Judgement.from_row(json.loads(x)) for x in lines)
    assert len(read_judgements(path)) == 200


def test_an_append_after_a_crash_starts_a_line_of_its_own(tmp_path: Path, capsys):
    path = write_lines(tmp_path / "run.jsonl", ten_lines()[:2] + [ten_lines()[2][:25]])
    append_judgement(path, judgement("rater-9", "talk#9", AUTHOR))
    assert "dropped an unfinished last line" in capsys.readouterr().err
    assert [j.rater for j in read_judgements(path)] == ["rater-1", "rater-2", "rater-9"]


# -- ratf score and ratf report ---------------------------------------------------------

RUN = "20261122-071500"


def scored_run(data: Path) -> tuple[Path, dict[str, str]]:
    """The tiny persona with its two held-out items, written as bench:setup would (without
    memories), and a run of two replicas' replies written as `ratf run` would."""
    from raft.files import write_json, write_jsonl
    from ratf.items import BenchItem
    from tests.tiny_persona import INTERVIEWS, TARGET, write_tiny_persona

    root = write_tiny_persona(data / "lena")
    interview = "2023-01-10-held-out-podcast"
    pairs = INTERVIEWS[f"benchmark/{interview}.json"]["exchanges"]
    items = [
        BenchItem(
            id=f"{interview}#{n}",
            interview=interview,
            date="2023-01-10",
            interviewer="Mo Okafor",
            target=TARGET,
            index=n,
            question=question,
            answer=answer,
            history=[],
            memories=[],
            kept=[],
            next_question=pairs[n + 1][0] if n + 1 < len(pairs) else "",
        )
        for n, (question, answer) in enumerate(pairs)
    ]
    write_jsonl(root / "bench" / "items.jsonl", [i.to_row() for i in items])
    folder = root / "ratf" / "runs" / RUN
    replies = {"base": "I like markets.", "raft": "The market is where my honey goes."}
    write_jsonl(
        folder / "replies.jsonl",
        [{"id": i.id, "system": s, "reply": r} for s, r in replies.items() for i in items],
    )
    replicas = {
        "base": {"spec": "local", "memories": False},
        "raft": {"spec": "x", "memories": True},
    }
    write_json(folder / "run.json", {"run": RUN, "replicas": replicas})
    env = {"RAFT_DATA_DIR": str(data), "RAFT_KEY_FILE": str(data / "no-keys.toml")}
    return folder, env


def test_score_and_report_show_the_human_blind_test_read_afresh(tmp_path: Path):
    folder, env = scored_run(tmp_path / "data")
    path = human_path(Persona("lena", folder.parent.parent.parent), RUN)
    write_lines(path, ten_lines([f"2023-01-10-held-out-podcast#{n}" for n in range(2)]))

    scored = run_cli("ratf", "score", "lena", "--run", RUN, "--no-likelihood", env=env)
    assert scored.returncode == 0, scored.stderr
    assert (
        "human blind test: 7 of 10 right (70%, 95% CI 40–89%), chance 33%: above chance"
        in scored.stdout.splitlines()
    )
    assert "taken for the author: base 2 of 10 (20%), raft 1 of 10 (10%)" in scored.stdout
    human = json.loads((folder / "summary.json").read_text())["human"]
    assert human["accuracy"]["correct"] == 7 and human["items"] == 2 and human["raters"] == 5

    # Two more judgements after scoring, both wrong: the report reads them from the file.
    for item in range(2):
        append_judgement(path, judgement("rater-6", f"2023-01-10-held-out-podcast#{item}", "raft"))
    reported = run_cli("ratf", "report", "lena", env=env)
    assert reported.returncode == 0, reported.stderr
    report = (folder / "report.md").read_text()
    section = report[report.index("## Human blind test") :].split("\n## ")[0]
    interval = binomtest(7, 12, 1 / 3).proportion_ci(method="wilson")
    assert f"0.583 [{interval.low:.3f}, {interval.high:.3f}]" in section
    assert "**7 of 12**" in section and "12 judgements by 6 raters on 2 items" in section
    assert "not distinguishable from chance" in section and "against chance 0.333" in section
    assert "| **base** | 0.167 [" in section and "| **raft** | 0.250 [" in section
    assert "could not tell the author from the replicas" in section
    assert "7 of 12 right" in reported.stdout

    # Without the file, the report falls back to what `ratf score` summarized.
    path.unlink()
    assert run_cli("ratf", "report", "lena", env=env).returncode == 0
    assert "**7 of 10**" in (folder / "report.md").read_text()


def test_score_without_judgements_adds_nothing(tmp_path: Path):
    folder, env = scored_run(tmp_path / "data")
    scored = run_cli("ratf", "score", "lena", "--run", RUN, "--no-likelihood", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "human blind test" not in scored.stdout
    assert "human" not in json.loads((folder / "summary.json").read_text())
    reported = run_cli("ratf", "report", "lena", env=env)
    assert reported.returncode == 0, reported.stderr
    assert "Human blind test" not in (folder / "report.md").read_text()
