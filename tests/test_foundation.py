"""Spec strings, atomic writes and the content-addressed cache."""

from __future__ import annotations

import json

import pytest

from raft.backends.cache import Cache, cache_key
from raft.backends.spec import BackendSpec, parse_spec
from raft.errors import RaftError, UsageError
from raft.files import read_jsonl, write_jsonl


@pytest.mark.parametrize(
    "text,expected",
    [
        ("local", BackendSpec("local")),
        ("openai:gpt-4o-mini", BackendSpec("openai", "gpt-4o-mini")),
        (
            "openai:ft:gpt-4o-mini:org:maren:abc",
            BackendSpec("openai", "ft:gpt-4o-mini:org:maren:abc"),
        ),
        (
            "openai:qwen@http://127.0.0.1:8000/v1",
            BackendSpec("openai", "qwen", "http://127.0.0.1:8000/v1"),
        ),
    ],
)
def test_specs_parse(text, expected):
    assert parse_spec(text) == expected
    assert str(parse_spec(text)) == text


def test_gguf_spec_needs_an_existing_file(tmp_path):
    model = tmp_path / "m.gguf"
    with pytest.raises(UsageError, match="no such GGUF file"):
        parse_spec(f"gguf:{model}")
    model.write_bytes(b"GGUF")
    assert parse_spec(f"gguf:{model}") == BackendSpec("gguf", str(model))


@pytest.mark.parametrize("text", ["", "gpt-4o", "openai:", "openai:m@ftp://x", "huggingface:x"])
def test_bad_specs_list_the_valid_forms(text):
    with pytest.raises(UsageError, match="use `local`, `gguf:"):
        parse_spec(text)


def test_interrupted_write_keeps_the_old_file_whole(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"n": 1}, {"n": 2}])

    def rows():
        yield {"n": 10}
        raise KeyboardInterrupt  # the user pressed Ctrl-C half-way

    with pytest.raises(KeyboardInterrupt):
        write_jsonl(path, rows())
    assert list(read_jsonl(path)) == [{"n": 1}, {"n": 2}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"a": 1}) + "\n{oops\n")
    with pytest.raises(RaftError, match=r"corpus.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


def test_cache_key_covers_every_part():
    base = cache_key(kind="chat", model="m", messages=[{"role": "user", "content": "x"}], seed=0)
    assert base == cache_key(
        seed=0, model="m", kind="chat", messages=[{"role": "user", "content": "x"}]
    )
    assert base != cache_key(
        kind="chat", model="m2", messages=[{"role": "user", "content": "x"}], seed=0
    )
    assert base != cache_key(
        kind="chat", model="m", messages=[{"role": "user", "content": "x"}], seed=1
    )


def test_cache_persists_and_counts_by_kind(tmp_path):
    cache = Cache(tmp_path / "cache.sqlite")
    cache.put("k1", "chat", b"one")
    cache.put_many("embed", [("k2", b"two"), ("k3", b"three")])
    cache.close()
    reopened = Cache(tmp_path / "cache.sqlite")
    assert reopened.get("k1") == b"one"
    assert reopened.get_many(["k3", "k2", "missing"]) == {"k3": b"three", "k2": b"two"}
    assert (reopened.count("chat"), reopened.count("embed"), reopened.count()) == (1, 2, 3)


def test_bounded_map_keeps_order_and_limit_and_never_nests_pools():
    import threading

    from raft.concurrency import bounded_map

    running, peak, lock = 0, 0, threading.Lock()
    together = threading.Barrier(3, timeout=30)  # breaks unless 3 run at once

    def work(n: int) -> tuple[int, int, list[int]]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        together.wait()
        outer = threading.get_ident()
        inner = bounded_map(lambda _: threading.get_ident(), range(3), 8)
        with lock:
            running -= 1
        return n, outer, inner

    done: list[int] = []
    results = bounded_map(work, range(6), 3, lambda r: done.append(r[0]))
    assert [n for n, _, _ in results] == done == list(range(6))  # in order, `done` too
    assert peak == 3  # at most `limit` at a time, and it was used
    # A map inside a worker runs in that worker: no pool inside a pool.
    assert all(inner == [outer] * 3 for _, outer, inner in results)


@pytest.mark.parametrize("first_line", ['name = "  "\n', "# my author\n"])
def test_the_transcripts_name_is_recorded_once_in_a_valid_persona_toml(tmp_path, first_line):
    from raft.config import load_config
    from raft.paths import Persona
    from raft.workspace import Workspace

    persona = Persona("lena", tmp_path / "lena")
    persona.transcripts.mkdir(parents=True)
    rest = 'sources = ["essays/"]\n\n[backends]\ngenerator = "local"\n'
    persona.config.write_text(first_line + rest)
    transcript = {
        "participants": {"q": "Sam Lee", "a": "Lena Marsh"},
        "date": "2024-05-01",
        "url": "",
        "exchanges": [["Why bees?", "Because the city roofs are full of lime trees."]],
    }
    (persona.transcripts / "2024-05-01-talk.json").write_text(json.dumps(transcript))

    ws = Workspace.open(persona, record_target=True)
    again = load_config(persona)  # the file as written parses, with one name
    assert (ws.config.name, again.name) == ("Lena Marsh", "Lena Marsh")
    assert again.sources == ("essays/",) and again.backends == {"generator": "local"}
    if first_line.startswith("#"):  # a file without `name` is kept as written below it
        assert persona.config.read_text().endswith(first_line + rest)
    assert Workspace.open(persona, record_target=True).config.recorded_name is False
