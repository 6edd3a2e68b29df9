"""The readers of user files, fuzzed: transcripts, `--predictions` lines and persona.toml.

Whatever a file holds, reading it gives a value or a `RaftError` (one line, exit 1 or 2 at
the CLI), never another exception (a traceback at the CLI).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raft.config import load_config
from raft.errors import RaftError
from raft.paths import Persona
from raft.target import target
from raft.transcripts import load_interview
from raft.workspace import Workspace
from ratf.items import BenchItem
from ratf.scoring import read_predictions

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
dates = st.sampled_from(["2023-01-10", "2023-02-30", "10/01/2023", "", "2023-1-1"]) | json_values
pairs = st.lists(st.text(max_size=30), min_size=0, max_size=3) | json_values
transcripts = st.fixed_dictionaries(
    {},
    optional={
        "participants": st.fixed_dictionaries(
            {}, optional={"q": json_values | st.text(max_size=20), "a": json_values}
        )
        | json_values,
        "date": dates,
        "url": json_values,
        "exchanges": st.lists(pairs, max_size=4) | json_values,
        "sources": json_values,
    },
)


def written(data: bytes, suffix: str) -> Path:
    handle = tempfile.NamedTemporaryFile(suffix=suffix, delete=False)  # noqa: SIM115
    handle.write(data)
    handle.close()
    return Path(handle.name)


def reads_or_refuses(read, path: Path):
    try:
        return read(path)
    except RaftError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return None
    finally:
        path.unlink()


@FUZZ
@given(transcripts | json_values)
def test_transcript_files_load_or_are_refused_in_one_line(data):
    path = written(json.dumps(data).encode(), ".json")
    interview = reads_or_refuses(load_interview, path)
    if interview is not None:
        assert interview.exchanges and all(q.strip() and a.strip() for q, a in interview.exchanges)


@FUZZ
@given(st.binary(max_size=200))
def test_transcript_bytes_load_or_are_refused_in_one_line(data):
    reads_or_refuses(load_interview, written(data, ".json"))


ITEMS = [
    BenchItem(f"iv#{n}", "iv", "2023-01-10", "Mo", "Lena", n, "q?", "a.", [], [], [], "")
    for n in range(3)
]
lines = st.lists(
    st.fixed_dictionaries(
        {},
        optional={"id": st.sampled_from(["iv#0", "iv#1", "iv#2", "iv#9"]) | json_values},
    ).flatmap(lambda row: st.just(row) | st.builds(lambda r: {**row, "reply": r}, json_values))
    | json_values,
    max_size=5,
)


@FUZZ
@given(lines, st.booleans())
def test_prediction_files_score_or_are_refused_in_one_line(rows, blank_lines):
    text = "\n".join(json.dumps(row) for row in rows) + ("\n\n" if blank_lines else "")
    replies = reads_or_refuses(
        lambda p: read_predictions(p, ITEMS), written(text.encode(), ".jsonl")
    )
    if replies is not None:
        assert set(replies) == {item.id for item in ITEMS}
        assert all(isinstance(r, str) and r.strip() for r in replies.values())


tomls = st.dictionaries(
    st.sampled_from(["name", "sources", "backends", "other"]),
    st.recursive(
        st.booleans() | st.integers(-5, 5) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["generator", "embedder", "judge", "x"]), inner, max_size=3
            )
        ),
        max_leaves=8,
    ),
)


@FUZZ
@given(tomls | st.binary(max_size=100))
def test_persona_toml_loads_or_is_refused_in_one_line(config):
    with tempfile.TemporaryDirectory() as folder:
        persona = Persona("lena", Path(folder) / "lena")
        persona.root.mkdir()
        data = config if isinstance(config, bytes) else tomli_w.dumps(config).encode()
        persona.config.write_bytes(data)
        try:
            load_config(persona)
            assert target(persona, warn=False).name
            for role in ("generator", "embedder", "judge"):
                Workspace.open(persona).spec(role)
        except RaftError as exc:
            assert str(exc) and "\n" not in str(exc).strip()
