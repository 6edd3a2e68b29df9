"""RATF end to end on the tiny persona: bench:setup, `ratf run` with the default replicas
that exist here (SmolLM2 base and a LoRA on the RAFT dataset, each without and with
memories; no plain model is trained, so plain and plain+mem are skipped), score, report."""

from __future__ import annotations

import json
import shutil

import pytest

from raft.backends.cache import Cache
from tests.helpers import run_cli
from tests.tiny_persona import ESSAYS, INTERVIEWS, add_lora, build_store

HELD_OUT = INTERVIEWS["benchmark/2023-01-10-held-out-podcast.json"]
REPLICAS = ["base", "base+mem", "raft-nomem", "raft"]  # no plain model trained here
CEILINGS = {"base+oracle": "base+mem", "raft+oracle": "raft"}  # likelihood only
CONTROLS = ["oracle", "shuffled", "other_voice"]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def benched(tmp_path_factory, extractive_lora):
    data = tmp_path_factory.mktemp("ratf") / "data"
    env = build_store(data)
    add_lora(data / "lena", extractive_lora)  # extractive: memories that pass the gate
    result = run_cli("raft", "bench:setup", "lena", env=env)
    assert result.returncode == 0, result.stderr
    run = run_cli("ratf", "run", "lena", "--max-tokens", "48", env=env)
    assert run.returncode == 0, run.stderr
    return data / "lena", env, run


@pytest.fixture(scope="module")
def scored(benched):
    persona, env, _ = benched
    result = run_cli("ratf", "score", "lena", env=env)
    assert result.returncode == 0, result.stderr
    folder = sorted((persona / "ratf" / "runs").iterdir())[-1]
    return folder, json.loads((folder / "summary.json").read_text()), result


def test_items_carry_real_history_and_memories_recalled_before_the_interview(benched):
    persona, _, _ = benched
    items = read_jsonl(persona / "bench" / "items.jsonl")
    assert [i["question"] for i in items] == [q for q, _ in HELD_OUT["exchanges"]]
    assert items[0]["history"] == []
    first_q, first_a = HELD_OUT["exchanges"][0]
    assert items[1]["history"][0]["question"] == first_q
    assert items[1]["history"][0]["answer"] == first_a
    assert all(m["date"] < HELD_OUT["date"] for i in items for m in i["memories"])
    assert any(i["kept"] for i in items)
    # The prompt replays the real answer to the first question before asking the second.
    prompt = items[1]["messages"]
    assert prompt[0]["role"] == "system" and HELD_OUT["participants"]["q"] in prompt[0]["content"]
    assert [m["content"] for m in prompt if m["role"] == "assistant"] == [first_a]
    assert prompt[-1]["content"].startswith(items[1]["question"])
    assert "[Memories" not in json.dumps(items[1]["messages_no_memories"])
    oai = read_jsonl(persona / "bench" / "openai.jsonl")
    assert [row["messages"] for row in oai] == [i["messages"] for i in items]


def test_oracle_memories_are_earlier_sentences_no_replica_prompt_shows(benched):
    from raft.conversation import ConversationSpec
    from ratf.items import BenchItem

    persona, _, _ = benched
    rows = read_jsonl(persona / "bench" / "items.jsonl")
    oai = (persona / "bench" / "openai.jsonl").read_text()
    oai += (persona / "bench" / "openai.no-memories.jsonl").read_text()
    earlier = {name[:10]: text for name, (_, text) in ESSAYS.items() if name < HELD_OUT["date"]}
    unseen = []
    for row in rows:
        item = BenchItem.from_row(row)
        assert len(item.oracle) == item.spec.oracle_sentences == 2
        for memory in item.oracle:  # verbatim sentences of essays before the interview
            assert memory.date < HELD_OUT["date"] and memory.rephrased in earlier[memory.date]
        budgets = [ConversationSpec.from_row(row["made"]["spec"]).budget]
        ceiling = json.dumps(item.prompt(budgets, oracle=True))
        assert all(json.dumps(m.rephrased)[1:-1] in ceiling for m in item.oracle)
        shown = [m.rephrased for m in item.kept_memories()]
        shown += [m.rephrased for h in item.history for m in h.memories]
        prompts = [row["messages"], row["messages_no_memories"]]
        prompts += [item.prompt(budgets, memories) for memories in (True, False)]
        for memory in item.oracle:
            if not any(memory.rephrased in text for text in shown):
                unseen.append(memory.rephrased)
                assert memory.rephrased not in json.dumps(prompts) + oai
    assert unseen  # else the check above proves nothing


def test_oai_rebuilds_the_prompt_files_and_generic_writes_only_items(benched, tmp_path):
    source, env, _ = benched
    persona = tmp_path / "data" / "lena"
    shutil.copytree(source, persona)
    env = {**env, "RAFT_DATA_DIR": str(persona.parent)}
    bench = persona / "bench"
    files = {p.name: p.read_bytes() for p in bench.iterdir()}
    assert set(files) == {"items.jsonl", "openai.jsonl", "openai.no-memories.jsonl"}
    calls = Cache(persona / "cache.sqlite").count("chat")
    for name in ("openai.jsonl", "openai.no-memories.jsonl"):
        (bench / name).unlink()
    oai = run_cli("raft", "bench:setup", "lena", "--oai", env=env)
    assert oai.returncode == 0, oai.stderr
    assert {p.name: p.read_bytes() for p in bench.iterdir()} == files
    assert Cache(persona / "cache.sqlite").count("chat") == calls  # no model call

    shutil.rmtree(bench)
    generic = run_cli("raft", "bench:setup", "lena", "--generic", env=env)
    assert generic.returncode == 0, generic.stderr
    assert {p.name: p.read_bytes() for p in bench.iterdir()} == {
        "items.jsonl": files["items.jsonl"]
    }
    both = run_cli("raft", "bench:setup", "lena", "--oai", "--generic", env=env)
    assert both.returncode == 2 and "exclude each other" in both.stderr


def test_run_writes_every_replica_reply_and_reruns_make_no_calls(benched):
    persona, env, run = benched
    folder = sorted((persona / "ratf" / "runs").iterdir())[0]
    replies = read_jsonl(folder / "replies.jsonl")
    assert sorted({r["system"] for r in replies}) == sorted(REPLICAS)
    assert len(replies) == 4 * len(HELD_OUT["exchanges"]) and all(r["reply"] for r in replies)
    meta = json.loads((folder / "run.json").read_text())
    assert meta["replicas"]["base"] == {"spec": "local", "memories": False}
    assert meta["replicas"]["raft"]["memories"] and meta["replicas"]["raft"]["spec"].startswith(
        "sft-"
    )
    # raft-nomem and raft run the adapter, base and base+mem do not
    assert "+lora:" in meta["models"]["raft-nomem"] and "+lora:" not in meta["models"]["base"]
    by_system = {(r["system"], r["id"]): r["reply"] for r in replies}
    assert any(by_system["raft-nomem", i] != by_system["base", i] for _, i in by_system)
    calls = Cache(persona / "cache.sqlite").count("chat")
    again = run_cli("ratf", "run", "lena", "--max-tokens", "48", env=env)
    assert again.returncode == 0, again.stderr
    assert Cache(persona / "cache.sqlite").count("chat") == calls
    latest = sorted((persona / "ratf" / "runs").iterdir())[-1]
    assert latest != folder and read_jsonl(latest / "replies.jsonl") == replies


def test_score_reports_every_system_with_intervals_and_ordered_controls(scored):
    _, summary, result = scored
    assert summary["systems"] == REPLICAS + CONTROLS
    assert summary["baseline"] == "base" and summary["n_items"] == 2
    for metric in ("rouge_l", "chrf", "semantic", "style", "length_ratio"):
        systems = summary["metrics"][metric]["systems"]
        for name in REPLICAS + CONTROLS:
            interval = systems[name]
            assert interval["low"] <= interval["mean"] <= interval["high"]
        assert set(summary["metrics"][metric]["vs_baseline"]) == {"base+mem", "raft-nomem", "raft"}
    assert summary["metrics"]["rouge_l"]["systems"]["oracle"]["mean"] == pytest.approx(1.0)
    for metric in ("rouge_l", "chrf", "semantic", "style"):
        assert summary["metrics"][metric]["controls_ordered"], metric
    for name in [*REPLICAS, "oracle", "shuffled", "other voice"]:
        assert name in result.stdout


def test_score_gives_every_local_replica_an_answer_likelihood(scored):
    _, summary, result = scored
    systems = summary["likelihood"]["systems"]
    # Each memory replica is followed by its ceiling: the oracle in its memory slot.
    assert list(systems) == ["base", "base+mem", "base+oracle", "raft-nomem", "raft", "raft+oracle"]
    for name, cell in systems.items():  # every replica here runs locally: none is n/a
        assert "n/a" not in cell, name
        assert cell["bits_per_byte"]["n"] == cell["shuffled"]["n"] == 2
        assert cell.get("ceiling_of") == CEILINGS.get(name)
    assert set(CEILINGS).isdisjoint(summary["systems"])  # no replies, no other metric
    # The fraction of the oracle gap closed: (none − memories) / (none − ceiling).
    closed = summary["likelihood"]["gap_closed"]
    assert {s: (c["none"], c["oracle"]) for s, c in closed.items()} == {
        "base+mem": ("base", "base+oracle"),
        "raft": ("raft-nomem", "raft+oracle"),
    }
    bpb = {name: cell["bits_per_byte"]["mean"] for name, cell in systems.items()}
    for system, cell in closed.items():
        expected = (bpb[cell["none"]] - bpb[system]) / (bpb[cell["none"]] - bpb[cell["oracle"]])
        assert cell["mean"] == pytest.approx(expected) and cell["n"] == 2
    table = " ".join(result.stdout.split())
    assert "base+oracle (ceiling)" in table and "raft+oracle (ceiling)" in table
    assert "fraction of the oracle gap closed" in table and "base+mem" in table
    # The fine-tuned replicas are scored as base + their ft:run adapter.
    tuned = [name for name, row in summary["replicas"].items() if row["spec"].startswith("sft-")]
    assert tuned and all("vs_baseline" in systems[name] for name in tuned)
    assert "bits/byte ↓" in result.stdout


def test_report_writes_markdown_and_plots(scored, benched):
    folder, summary, _ = scored
    _, env, _ = benched
    result = run_cli("ratf", "report", "lena", env=env)
    assert result.returncode == 0, result.stderr
    report = (folder / "report.md").read_text()
    assert "Lena Marsh" in report and HELD_OUT["exchanges"][0][1] in report
    assert "| **base+oracle** (ceiling) |" in report and "| **raft+oracle** (ceiling) |" in report
    assert "it reads the answer, so no replica can have these memories at inference" in report
    assert "Fraction of the oracle gap closed" in report and "(base → base+oracle)" in report
    plots = list((folder / "plots").glob("*.png"))
    assert plots and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert str(folder / "report.md") in result.stdout


def test_bench_setup_refuses_a_held_out_answer_in_the_corpus(benched, tmp_path):
    import shutil

    persona, env, _ = benched
    copy = tmp_path / "data" / "lena"
    shutil.copytree(persona, copy, ignore=shutil.ignore_patterns("chroma", "models", "ratf"))
    leaked = {
        "id": "podcast-notes:0",
        "title": "Podcast notes",
        "link": "https://x/notes",
        "date": "2023-02-01",
        "text": "From the show: " + HELD_OUT["exchanges"][0][1],
    }
    with open(copy / "chunks.jsonl", "a") as handle:
        handle.write(json.dumps(leaked) + "\n")
    result = run_cli(
        "raft", "bench:setup", "lena", env={**env, "RAFT_DATA_DIR": str(tmp_path / "data")}
    )
    assert result.returncode == 1
    assert (
        "chunk podcast-notes:0" in result.stderr
        and "held-out interview is in the corpus" in result.stderr
    )


def test_judge_reports_win_rates_and_discrimination_with_cached_calls(benched):
    persona, env, _ = benched
    run = sorted(p for p in (persona / "ratf" / "runs").iterdir() if "predictions" not in p.name)[0]
    # Answer likelihood is the scored fixture's to check; here it would only load SmolLM2 twice.
    args = ["score", "lena", "--run", run.name, "--judge", "local", "--no-likelihood"]
    result = run_cli("ratf", *args, env=env)
    assert result.returncode == 0, result.stderr
    judge = json.loads((run / "summary.json").read_text())["judge"]
    assert set(judge["pairwise"]) == {"base+mem", "raft-nomem", "raft"}
    for verdict in judge["pairwise"].values():
        assert 0 <= verdict["win_rate"]["low"] <= verdict["win_rate"]["high"] <= 1
        assert verdict["win_rate"]["n"] == 2
    assert judge["discrimination"]["chance"] == pytest.approx(1 / 5)
    assert judge["discrimination"]["picked_real"]["n"] == 2
    calls = Cache(persona / "cache.sqlite").count("chat")
    assert run_cli("ratf", *args, env=env).returncode == 0
    assert Cache(persona / "cache.sqlite").count("chat") == calls  # every verdict was cached
