"""One conversation spec: training samples, chat, serve, the benchmark, the judge and the
export render the same prompt for the same target.

The tiny persona with no `name` in persona.toml; ft:gen with `--context`, `-k 3` and a
generator given by flag (SmolLM2 behind `python -m llama_cpp.server`); a one-step LoRA.
"""

from __future__ import annotations

import json
import random
import sqlite3

import httpx
import pytest

from raft.backends.llm import CachedLLM
from raft.conversation import Budget, ConversationSpec, Exchange, render, system_prompt
from raft.dataset import Sample
from raft.files import read_jsonl
from raft.memory import Memory
from raft.paths import Persona
from raft.replica import ReplicaSettings, open_replica
from raft.target import target
from tests.helpers import PromptRecorder, run_cli, serve_app
from tests.tiny_persona import INTERVIEWS, TARGET, build_store, write_tiny_persona

SOURCES = '# where the essays live\nsources = ["essays"]\n'


def unnamed(data) -> dict[str, str]:
    """The tiny persona's store, with a persona.toml that does not name the author."""
    env = build_store(data)
    (data / "lena" / "persona.toml").write_text(SOURCES)
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory, llama_server):
    data = tmp_path_factory.mktemp("spec") / "data"
    env = unnamed(data)
    generator = f"openai:smollm2@{llama_server}"
    made = run_cli(
        "raft",
        *["ft:gen", "lena", "-k", "3", "--context", "--distractors", "1"],
        *["--memories", "rephrased"],
        *["--max-tokens", "700", "--answer-reserve", "120", "--generator", generator],
        env=env,
    )
    assert made.returncode == 0, made.stderr
    trained = run_cli("raft", "ft:run", "lena", "--max-steps", "1", env=env)
    assert trained.returncode == 0, trained.stderr
    return data / "lena", env, trained.stdout.split(":")[0], made


@pytest.fixture
def persona(trained, monkeypatch) -> Persona:
    folder, env, _, _ = trained
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Persona.named("lena")


def samples(folder) -> list[Sample]:
    return [Sample.from_row(row) for row in read_jsonl(folder / "finetune" / "raft.jsonl")]


def test_chat_prompt_is_the_training_sample_minus_its_answer(trained, persona, capsys):
    """Real recall at inference, from the spec alone: same generator, k, context, budget."""
    from transformers import AutoTokenizer

    folder, _, run, _ = trained
    record = json.loads((folder / "models" / "registry.json").read_text())["models"][-1]
    assert record["spec"]["k"] == 3 and record["spec"]["context"] is True
    assert record["spec"]["generator"].startswith("openai:smollm2@")
    assert record["budget"]["limit"] == 1024 and record["budget"]["reserve"] == 120

    checked = 0
    for sample in samples(folder):
        if not sample.history:
            continue
        # --distractors 1 keeps every memory useful by the question: what inference keeps.
        assert sample.kept == [m.chunk_id for m in sample.useful()]
        settings = ReplicaSettings(
            interviewer=sample.interviewer, before=sample.date, date=sample.date
        )
        replica = open_replica(persona, run, settings)
        data = next(v for k, v in INTERVIEWS.items() if sample.interview in k)
        pairs = [tuple(pair) for pair in data["exchanges"][: sample.index]]
        history = replica.recall_history(pairs)
        memories = replica.remember(sample.question, history)
        prompt = replica.messages(history, sample.question, memories)

        # Every recall call was one ft:gen made: no other generator, k, query or prompt.
        assert replica.recall.llm.calls == 0
        assert prompt == sample.messages[:-1]  # byte for byte

        tokenizer = AutoTokenizer.from_pretrained(folder / record["budget"]["tokenizer"])
        trained_ids = tokenizer.apply_chat_template(
            sample.messages, tokenize=True, return_dict=True
        )["input_ids"]
        served_ids = tokenizer.apply_chat_template(
            prompt, tokenize=True, add_generation_prompt=True, return_dict=True
        )["input_ids"]
        assert trained_ids[: len(served_ids)] == served_ids
        assert len(trained_ids) > len(served_ids)
        checked += 1
    assert checked >= 2
    assert "warning" not in capsys.readouterr().err


def test_a_generator_flag_that_differs_from_the_spec_warns_once(trained, persona, capsys):
    _, _, run, _ = trained
    replica = open_replica(persona, run, ReplicaSettings(), generator="local")
    lines = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(lines) == 1 and "--generator local differs" in lines[0]
    assert "openai:smollm2@" in lines[0]
    assert replica.recall.llm.model_id.startswith("gguf:")


def requests_sent(folder) -> list[list[dict]]:
    """The messages of every chat request the persona's cache holds."""
    with sqlite3.connect(folder / "cache.sqlite") as db:
        rows = db.execute("SELECT request FROM calls WHERE kind = 'chat'").fetchall()
    return [json.loads(request)["messages"] for (request,) in rows if request]


def test_every_prompt_names_the_target_the_transcripts_give(trained, persona):
    """No `name` in persona.toml: samples, chat, serve, bench items, the judge and the
    Modelfile all name the author as the training transcripts do, never the slug."""
    from raft.replica import Replicas
    from raft.serve import create_app
    from ratf.items import load_items
    from ratf.judge import discriminate, pairwise

    folder, env, run, made = trained
    you_are = f"You are {TARGET}."
    # The first ft:gen recorded the name, keeping what the file held.
    assert (folder / "persona.toml").read_text() == f'name = "{TARGET}"\n' + SOURCES
    assert f"recorded the author's name '{TARGET}'" in made.stderr
    assert target(persona).name == TARGET

    for sample in samples(folder):
        assert sample.target == TARGET and sample.messages[0]["content"].startswith(you_are)

    chat = run_cli(
        "raft", "chat", "lena", "--model", run, "--max-tokens", "8", "--once", "Bees?", env=env
    )
    assert chat.returncode == 0, chat.stderr
    replica = open_replica(persona, run, ReplicaSettings(reply_tokens=8, seed=3))
    with serve_app(create_app(Replicas(replica, "lena"))) as url:
        body = {"messages": [{"role": "user", "content": "Bread?"}]}
        assert httpx.post(f"{url}/chat/completions", json=body, timeout=300).status_code == 200

    setup = run_cli("raft", "bench:setup", "lena", env=env)
    assert setup.returncode == 0, setup.stderr
    items = load_items(persona)
    assert {item.target for item in items} == {TARGET}
    assert all(item.messages[0]["content"].startswith(you_are) for item in items)

    judge = PromptRecorder()
    pairwise(CachedLLM(judge), items[0], "a reply", "another reply")
    discriminate(CachedLLM(judge), items[0], ["a reply"])
    assert len(judge.prompts) == 3 and all(TARGET in p for p in judge.prompts)

    export = run_cli("raft", "export", "lena", "--run", run, "--gguf", env=env)
    assert export.returncode == 0, export.stderr
    assert you_are in (folder / "models" / run / "Modelfile").read_text()

    systems = [m[0]["content"] for m in requests_sent(folder) if m[0]["role"] == "system"]
    # ft:gen's samples go to no model; chat's and serve's replies do.
    assert len(systems) >= 2 and all(s.startswith(you_are) for s in systems)
    assert not any("You are lena" in str(m) for m in requests_sent(folder))


def test_transcript_add_records_the_name_and_reports_others(tmp_path):
    data = tmp_path / "data"
    write_tiny_persona(data / "lena")
    (data / "lena" / "persona.toml").write_text(SOURCES)
    other = dict(INTERVIEWS["transcripts/2022-06-15-city-magazine.json"])
    other |= {"participants": {"q": "Jo Park", "a": "L. Marsh"}, "date": "2022-09-01"}
    other |= {"url": "https://example.org/jo", "exchanges": [["Honey?", "Lime blossom, mostly."]]}
    path = tmp_path / "jo-park.json"
    path.write_text(json.dumps(other))
    env = {"RAFT_DATA_DIR": str(data)}
    added = run_cli("raft", "transcript:add", "lena", str(path), env=env)
    assert added.returncode == 0, added.stderr
    # Two transcripts say Lena Marsh, one L. Marsh: the name is recorded, the other named.
    assert (data / "lena" / "persona.toml").read_text() == f'name = "{TARGET}"\n' + SOURCES
    assert "1 training transcript(s) name the author 'L. Marsh'" in added.stderr


def test_without_any_name_prompts_say_the_author_not_the_slug(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAFT_DATA_DIR", str(tmp_path))
    (tmp_path / "jdoe").mkdir()
    found = target(Persona.named("jdoe"))
    assert (found.name, found.prompt_name) == ("jdoe", "the author")
    assert "no `name`" in capsys.readouterr().err
    assert system_prompt(found.prompt_name, "Jo", "2024-01-01").startswith("You are the author.")


# --- history blocks: pure rendering, no model ---

LONG = Budget(1500, 200)
WORDS = ("bees", "honey", "hive", "city", "roof", "garden", "lime", "blossom", "queen", "wax")


def long_interview(n: int = 20) -> list[Exchange]:
    """Exchanges with ~150-word answers: a 1500-token budget carries only the last few."""
    rng = random.Random(7)
    return [
        Exchange(
            f"Question {i}: what about the {rng.choice(WORDS)}?",
            " ".join(rng.choices(WORDS, k=150)),
        )
        for i in range(n)
    ]


def start(rendered, index: int) -> int:
    """The first earlier exchange a prompt carries; `index` when it carries none."""
    return rendered.history[0] if rendered.history else index


def test_history_is_dropped_a_block_at_a_time_so_prompts_extend_each_other():
    history = long_interview()
    system = system_prompt(TARGET, "Jo Park", "2024-01-01")
    prompts, starts, minimal_starts = [], [], []
    for i, turn in enumerate(history):
        blocked = render(system, history[:i], turn.question, [], [LONG], block=4)
        minimal = render(system, history[:i], turn.question, [], [LONG], block=1)
        assert not blocked.history or blocked.history[0] % 4 == 0
        assert blocked.history == list(range(start(blocked, i), i))
        assert LONG.fits(blocked.messages) and blocked.n_tokens + LONG.reserve <= LONG.limit
        # Only as many more exchanges are dropped as reach the next multiple of 4.
        assert start(minimal, i) <= start(blocked, i) < start(minimal, i) + 4
        if starts and starts[-1] == start(blocked, i):
            # The previous prompt, its question now answered, is where this one starts.
            previous = prompts[-1]
            assert blocked.messages[: len(previous) - 1] == previous[:-1]
            assert blocked.messages[len(previous) - 1] == previous[-1]
        prompts.append(blocked.messages)
        starts.append(start(blocked, i))
        minimal_starts.append(start(minimal, i))

    def extending(found: list[int]) -> int:
        return sum(a == b for a, b in zip(found, found[1:], strict=False))

    assert max(minimal_starts) >= 8  # the budget did force old exchanges out
    # With block=1 the start moves nearly every question once the budget is full; with
    # block=4 about once in four, so more prompts extend the previous one.
    assert extending(starts) > extending(minimal_starts)
    assert len(set(starts)) < len(set(minimal_starts))


def test_history_blocks_keep_the_training_sample_the_prompt_plus_its_answer():
    history = long_interview()
    for turn in history:
        turn.memories = [
            Memory("bees:0", "bees", "Rooftop Bees", "", "2020-03-01", "", 0.1, rephrased="Bees.")
        ]
    system = system_prompt(TARGET, "Jo Park", "2024-01-01")
    dropped = 0
    for i, turn in enumerate(history):
        args = (system, history[:i], turn.question, turn.memories, [LONG])
        prompt = render(*args, block=4)
        sample = render(*args, answer=turn.answer, block=4)
        assert sample.messages == prompt.messages + [{"role": "assistant", "content": turn.answer}]
        assert sample.history == prompt.history and sample.dropped == prompt.dropped
        dropped = max(dropped, prompt.dropped)
    assert dropped >= 4


def test_a_spec_row_without_history_block_reads_as_before_the_field_existed():
    spec = ConversationSpec(target="X")
    assert (spec.judge_batch, spec.skip_below, spec.history_block) == (True, 0.0, 4)
    row = spec.to_row()
    for name in ("judge_batch", "skip_below", "history_block"):
        del row[name]
    old = ConversationSpec.from_row(row)
    assert (old.judge_batch, old.skip_below, old.history_block) == (False, 0.0, 1)
    assert ConversationSpec.from_row(spec.to_row()) == spec
