"""`raft embed:train`: a retriever fine-tuned on the tiny persona's training interviews, through
the real MiniLM and Chroma, then used by `raft embed` and `raft search`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.tiny_persona import INTERVIEWS, build_store, held_out_texts, registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """The tiny persona's store and a retriever trained on it (1 epoch, batches of 4)."""
    data = tmp_path_factory.mktemp("retriever") / "data"
    env = build_store(data)
    result = run_cli("raft", "embed:train", "lena", "--epochs", "1", "--batch-size", "4", env=env)
    assert result.returncode == 0, result.stderr
    return data / "lena", env, result


def test_the_retriever_is_recorded_and_saved_but_is_no_chat_model(trained, capsys):
    persona, env, result = trained
    [record] = registry(persona)
    assert (record["method"], record["venue"], record["status"]) == (
        "retriever",
        "local",
        "succeeded",
    )
    assert record["model"] == f"models/{record['id']}/retriever"
    assert (persona / record["model"] / "modules.json").is_file()
    assert "raft embed lena --rebuild" in result.stdout
    assert isinstance(record["metrics"]["train_loss"], float)

    from raft.errors import UsageError
    from raft.paths import Persona
    from raft.training.registry import find_record, print_records

    lena = Persona(persona.name, persona)
    print_records(lena)  # `raft models lena`
    assert f"{record['id']}  local/retriever  succeeded" in capsys.readouterr().out
    with pytest.raises(UsageError, match="no trained model"):  # chat, export, serve pass it over
        find_record(lena)
    with pytest.raises(UsageError, match="is a retriever"):
        find_record(lena, record["id"])


def test_it_trains_on_training_questions_only(trained):
    persona, _, _ = trained
    [record] = registry(persona)
    pairs = [json.loads(line) for line in (persona / record["files"]["pairs"]["path"]).open()]
    training = {
        q
        for name, data in INTERVIEWS.items()
        if name.startswith("transcripts/")
        for q, _ in data["exchanges"]
    }
    assert pairs and {p["question"] for p in pairs} <= training
    assert not {p["question"] for p in pairs} & set(held_out_texts())
    assert record["params"]["pairs"] == len(pairs)
    for pair in pairs:  # an oracle sentence is earlier writing, dated before the interview
        assert pair["sentence"] and pair["date"] in ("2021-06-01", "2022-06-15")


def test_embed_and_recall_use_it_once_the_store_is_rebuilt(trained, tmp_path: Path):
    from raft.corpus import embed_corpus
    from raft.errors import RaftError, UsageError
    from raft.paths import Persona
    from raft.retriever import RetrieverSettings, train_retriever
    from raft.workspace import Workspace

    persona, env, _ = trained
    [record] = registry(persona)
    retriever = f"local:retriever:{record['id']}"
    question = "What is the worst month for a beekeeper?"

    lena = Persona("lena", persona)
    # What `raft search`, chat and ft:gen say (a RaftError: exit 1) until the store is rebuilt.
    with pytest.raises(RaftError) as old:
        Workspace.open(lena).store.query(question, k=1)
    assert "built with local:all-MiniLM-L6-v2" in str(old.value) and retriever in str(old.value)
    assert "raft embed lena --rebuild" in str(old.value)
    plain = Workspace.open(lena, embedder="local:all-MiniLM-L6-v2")  # the way to opt out
    assert plain.store.count() > 0

    # Nothing to pair: a clear error before any training, and no record.
    bare = Persona("lena", tmp_path / "bare")
    with pytest.raises(UsageError, match="no training pairs for 'lena'.*transcripts"):
        train_retriever(bare, plain.store, RetrieverSettings())
    assert not bare.models.exists()

    # On a copy, so the other tests see the old collection.
    copy = tmp_path / "data"
    shutil.copytree(persona.parent, copy, ignore=shutil.ignore_patterns(".lock"))
    stats = embed_corpus(Persona("lena", copy / "lena"), rebuild=True)  # raft embed --rebuild
    assert stats.added == len((copy / "lena" / "chunks.jsonl").read_text().splitlines())

    ws = Workspace.open(Persona("lena", copy / "lena"))
    assert str(ws.spec("embedder")) == retriever  # ft:gen records it; chat and bench read it
    pairs = [json.loads(line) for line in (persona / record["files"]["pairs"]["path"]).open()]
    oracle = next(p for p in pairs if p["question"] == question)
    # Recall's query: chunks of the writing dated before the interview, nearest the question.
    [hit] = ws.store.query(question, k=1, before_date=oracle["date"], kinds=("chunk",))
    assert hit.id == oracle["chunk_id"].rpartition("@")[0]


def test_an_embedder_spec_may_name_the_plain_model_or_a_retriever():
    from raft.backends.spec import BackendSpec, choose_spec, parse_spec
    from raft.errors import UsageError

    plain = parse_spec("local:all-MiniLM-L6-v2")
    assert (
        plain == BackendSpec("local", "all-MiniLM-L6-v2") and str(plain) == "local:all-MiniLM-L6-v2"
    )
    assert str(parse_spec("local:retriever:retriever-20261205-055336")).endswith("055336")
    with pytest.raises(UsageError, match="only an embedder names a local model"):
        choose_spec("generator", "local:all-MiniLM-L6-v2", {})
    with pytest.raises(UsageError, match="unknown backend spec"):
        parse_spec("local:some-other-model")
