"""`scripts/overlap`: the share of the answers' word 5-grams found in the author's writing."""

from __future__ import annotations

import shutil
from pathlib import Path

from studies.overlap import main, overlap
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parent.parent


def test_overlap_counts_quoted_five_grams_not_shared_ideas():
    writing = {("a", "colony", "is", "a", "promise"), ("colony", "is", "a", "promise", "you")}
    quoted, total = overlap(["A colony is a promise you renew."], writing)
    assert (quoted, total) == (2 / 3, 3)
    said_anew, _ = overlap(["Keeping bees means keeping faith with them."], writing)
    assert said_anew == 0.0


def test_the_sample_persona_quotes_its_essays(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "data" / "sample", tmp_path / "sample")
    env = {"RAFT_DATA_DIR": str(tmp_path)}
    assert run_cli("raft", "fetch", "sample", env=env).returncode == 0
    monkeypatch.setenv("RAFT_DATA_DIR", str(tmp_path))
    main(["sample"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "training: 20.4% of 5733 answer 5-grams are in the writing",
        "held-out: 15.2% of 1401 answer 5-grams are in the writing",
    ]


def test_the_realistic_persona_says_its_ideas_in_new_words(tmp_path, monkeypatch, capsys):
    shutil.copytree(REPO / "data" / "ines", tmp_path / "ines")
    assert run_cli("raft", "fetch", "ines", env={"RAFT_DATA_DIR": str(tmp_path)}).returncode == 0
    monkeypatch.setenv("RAFT_DATA_DIR", str(tmp_path))
    main(["ines"])
    shares = [
        float(line.split(":")[1].split("%")[0])
        for line in capsys.readouterr().out.split("\n")
        if line
    ]
    assert len(shares) == 2 and all(share <= 2.0 for share in shares)  # the bound
