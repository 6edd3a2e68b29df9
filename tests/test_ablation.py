"""The ablation that isolates RAFT: `ft:gen --no-memories` writes the same samples without
memories, `ft:run --dataset plain` trains on them, and `ratf run` replays the six systems,
skipping (and naming the commands for) any model not trained yet."""

from __future__ import annotations

import json
import shutil

from raft.backends.cache import Cache
from tests.helpers import run_cli
from tests.tiny_persona import FINETUNE_FILES, digests

SLOT = "[Memories from your own earlier writing]"


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_plain_dataset_trains_and_ratf_runs_the_systems_that_exist(generated, tmp_path):
    source, env, _ = generated
    data = tmp_path / "data"
    shutil.copytree(source, data / "lena")
    env = env | {"RAFT_DATA_DIR": str(data)}
    persona = data / "lena"
    raft_files = digests(persona / "finetune")

    early = run_cli("raft", "ft:run", "lena", "--dataset", "plain", "--max-steps", "1", env=env)
    assert early.returncode == 2
    assert "run `raft ft:gen lena --no-memories` first" in early.stderr
    both = run_cli("raft", "ft:gen", "lena", "--memories", "rephrased", "--no-memories", env=env)
    assert both.returncode == 2 and "exclude each other" in both.stderr

    calls = Cache(persona / "cache.sqlite").count("chat")
    made = run_cli("raft", "ft:gen", "lena", "-k", "2", "--no-memories", env=env)
    assert made.returncode == 0, made.stderr
    assert "0 model calls" in made.stdout
    assert Cache(persona / "cache.sqlite").count("chat") == calls

    plain_dir = persona / "finetune" / "plain"
    assert all((plain_dir / name).is_file() for name in FINETUNE_FILES)
    assert digests(persona / "finetune") == raft_files  # the RAFT dataset is untouched
    raft_rows = read_jsonl(persona / "finetune" / "raft.jsonl")
    plain_rows = read_jsonl(plain_dir / "raft.jsonl")
    # The same samples, in the same order, with the same answers; no memory anywhere.
    assert [r["id"] for r in plain_rows] == [r["id"] for r in raft_rows]
    assert [r["answer"] for r in plain_rows] == [r["answer"] for r in raft_rows]
    assert all(r["memories"] == [] and r["kept"] == [] for r in plain_rows)
    plain_text = (plain_dir / "messages.jsonl").read_text()
    assert SLOT not in plain_text and SLOT in (persona / "finetune" / "messages.jsonl").read_text()
    # Without memory slots, every sample carries at least as much earlier conversation.
    by_id = {r["id"]: r for r in raft_rows}
    assert all(len(r["history"]) >= len(by_id[r["id"]]["history"]) for r in plain_rows)
    stats = json.loads((plain_dir / "stats.json").read_text())
    assert stats["dataset"] == "plain" and stats["spec"]["memory_style"] == "none"
    assert stats["memories"]["retrieved"] == 0

    trained = run_cli("raft", "ft:run", "lena", "--dataset", "plain", "--max-steps", "1", env=env)
    assert trained.returncode == 0, trained.stderr
    (record,) = json.loads((persona / "models" / "registry.json").read_text())["models"]
    assert record["dataset"] == "plain" and record["status"] == "succeeded"
    assert record["files"]["train"]["path"] == "finetune/plain/messages.jsonl"
    assert record["spec"]["memory_style"] == "none"

    setup = run_cli("raft", "bench:setup", "lena", env=env)
    assert setup.returncode == 0, setup.stderr
    run = run_cli("ratf", "run", "lena", "--max-tokens", "16", env=env)
    assert run.returncode == 0, run.stderr
    assert (
        "skipping raft-nomem, raft: no model trained on the raft dataset yet; make one with "
        "`raft ft:gen lena` and `raft ft:run lena`"
    ) in " ".join(run.stderr.split())
    folder = sorted((persona / "ratf" / "runs").iterdir())[-1]
    meta = json.loads((folder / "run.json").read_text())
    assert meta["replicas"] == {
        "base": {"spec": "local", "memories": False},
        "base+mem": {"spec": "local", "memories": True},
        "plain": {"spec": record["id"], "memories": False},
        "plain+mem": {"spec": record["id"], "memories": True},
    }
    # A plain model is trained without memories by design: no spec warning for it.
    assert "another conversation spec" not in run.stderr
