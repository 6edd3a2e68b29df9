"""Inputs that are damaged, hostile or merely messy: a call cache that is no database, a
--run that points out of the persona, credentials in a backend URL, and two transcripts
that share a url but are different interviews."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from fastapi.responses import JSONResponse

from tests.helpers import run_cli, serve_app
from tests.robustness.faulty_llm import FaultyLLM
from tests.tiny_persona import INTERVIEWS, TARGET, build_store, write_tiny_persona

USER, PASSWORD = "raftuser", "pw-s3cret-5521"
GARDEN = "transcripts/2021-06-01-garden-radio.json"
SHARED_URL = INTERVIEWS[GARDEN]["url"]
# Another interview whose transcript carries the garden radio's url, pasted by mistake.
ANOTHER = {
    "participants": {"q": "Priya Nair", "a": TARGET},
    "date": "2023-03-02",
    "url": SHARED_URL,
    "exchanges": [
        [
            "What did the bees make of this winter?",
            "They clustered early and came out thin, but both hives made it to March.",
        ],
        [
            "Is Gerald still going?",
            "Gerald is eleven and sulks in the cold, like the rest of us in this flat.",
        ],
    ],
}


class GuardedLLM(FaultyLLM):
    """The scripted OpenAI-compatible server behind HTTP basic auth: it answers only the
    requests that carry USER and PASSWORD, as a client sends a URL's `user:password@`."""

    def __init__(self):
        super().__init__()
        self.refused = 0

    def app(self):
        app = super().app()
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

        @app.middleware("http")
        async def authenticate(request, call_next):
            if request.headers.get("authorization") != expected:
                self.refused += 1
                error = {"error": {"message": "wrong credentials", "type": "auth"}}
                return JSONResponse(error, 401)
            return await call_next(request)

        return app


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The tiny persona with its store built, once; tests work on copies."""
    data = tmp_path_factory.mktemp("hostile") / "data"
    return data / "lena", build_store(data)


def copy_of(store, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    source, env = store
    persona = tmp_path / "data" / "lena"
    shutil.copytree(source, persona)
    return persona, {**env, "RAFT_DATA_DIR": str(persona.parent)}


def tiny(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    persona = write_tiny_persona(tmp_path / "data" / "lena")
    return persona, {"RAFT_DATA_DIR": str(persona.parent), "RAFT_KEY_FILE": str(tmp_path / "k")}


def one_line(result, code: int) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1, result.stderr
    return lines[0]


def test_a_damaged_cache_is_named_with_its_fix_and_left_alone(tmp_path):
    persona, env = tiny(tmp_path)
    for command in (["fetch", "lena"], ["chunk", "lena"]):
        assert run_cli("raft", *command, env=env).returncode == 0
    cache = persona / "cache.sqlite"
    cache.write_bytes(b"half of a download that was meant to be a cache\n" * 64)
    damaged = cache.read_bytes()

    result = run_cli("raft", "embed", "lena", env=env)
    assert one_line(result, 1) == (
        f"raft: error: {cache}: not a usable cache (file is not a database); delete it to "
        "rebuild (cached calls will be made again)"
    )
    assert cache.read_bytes() == damaged
    assert [p.name for p in persona.glob("cache.sqlite*")] == ["cache.sqlite"]

    cache.unlink()  # as the message says
    rebuilt = run_cli("raft", "embed", "lena", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr


@pytest.mark.parametrize("command", ["score", "report"])
@pytest.mark.parametrize("run", ["../../../outside", "ok/../../../../outside", "a/b", "..", ""])
def test_a_run_is_named_by_its_folder_inside_the_persona(tmp_path, command, run):
    persona, env = tiny(tmp_path)
    runs = persona / "ratf" / "runs"
    (runs / "20250101-000000").mkdir(parents=True)
    outside = persona.parent / "outside"  # what ../../../outside reaches from runs/
    outside.mkdir()
    (outside / "run.json").write_text(json.dumps({"run": "outside", "replicas": {}}))
    (outside / "replies.jsonl").write_text("")
    (outside / "summary.json").write_text(json.dumps({"run": "outside"}))
    before = {p.name: p.read_bytes() for p in outside.iterdir()}

    result = run_cli("ratf", command, "lena", "--run", run, env=env)
    assert one_line(result, 2) == (
        f"ratf: error: --run {run!r} is not the name of a run: give the name of a folder in "
        f"{runs} (no path, no '..')"
    )
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_a_run_name_is_still_looked_up_in_the_runs_folder(tmp_path):
    persona, env = tiny(tmp_path)
    (persona / "ratf" / "runs" / "20250101-000000").mkdir(parents=True)
    result = run_cli("ratf", "report", "lena", "--run", "20250101-000000", env=env)
    assert "no summary.json for run '20250101-000000'" in one_line(result, 2)


@pytest.fixture
def guarded():
    server = GuardedLLM()
    with serve_app(server.app()) as url:
        server.url = url
        server.secret_url = url.replace("http://", f"http://{USER}:{PASSWORD}@")
        yield server


def test_credentials_in_a_backend_url_reach_the_server_and_nothing_else(store, tmp_path, guarded):
    persona, env = copy_of(store, tmp_path)
    secret = f"openai:faulty@{guarded.secret_url}"
    plain = f"openai:faulty@{guarded.url}"
    ft_gen = run_cli(
        "raft",
        *["ft:gen", "lena", "-k", "2", "--memories", "rephrased", "--generator", secret],
        env=env,
    )
    assert ft_gen.returncode == 0, ft_gen.stderr
    assert guarded.refused == 0 and guarded.calls > 0
    spec = json.loads((persona / "finetune" / "stats.json").read_text())["spec"]
    assert spec["generator"] == spec["generator_id"] == plain
    outputs = [ft_gen]

    # The records hold no credentials, so without them the server refuses the next stage...
    denied = run_cli("raft", "bench:setup", "lena", env=env)
    outputs.append(denied)
    assert f"raft: error: {plain}: AuthenticationError" in one_line(denied, 1)
    assert guarded.refused > 0
    # ...and once they are given again through the environment, the recorded spec works.
    env = {**env, "RAFT_GENERATOR": secret}
    for program, *args in (
        ["raft", "bench:setup", "lena"],
        ["ratf", "run", "lena", "--replica", f"base={secret},memories=off"],
        ["ratf", "score", "lena"],
        ["ratf", "report", "lena"],
        ["raft", "chat", "lena", "--model", plain, "--once", "How are the bees?"],
    ):
        outputs.append(run_cli(program, *args, env=env))
        assert outputs[-1].returncode == 0, outputs[-1].stderr
    assert guarded.reply in outputs[-1].stdout
    [run] = (persona / "ratf" / "runs").iterdir()
    assert json.loads((run / "run.json").read_text())["replicas"]["base"]["spec"] == plain

    for result in outputs:
        assert PASSWORD not in result.stdout + result.stderr
        assert f"{USER}:" not in result.stdout + result.stderr
    for path in persona.parent.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def shared_url_warning(held: Path, training: Path) -> str:
    return (
        f"raft: warning: {held} and {training} share the url {SHARED_URL} but not their "
        "exchanges; treated as different interviews"
    )


def test_an_interview_that_shares_only_a_url_is_held_out_with_a_warning(tmp_path):
    persona, env = tiny(tmp_path)
    source = tmp_path / "2023-03-02-priya.json"
    source.write_text(json.dumps(ANOTHER))
    added = run_cli("raft", "transcript:add", "lena", str(source), "--benchmark", env=env)
    assert added.returncode == 0, added.stderr
    held, training = persona / "benchmark" / source.name, persona / GARDEN
    assert held.is_file()
    assert added.stderr.splitlines() == [shared_url_warning(held, training)]

    checked = run_cli("raft", "check", "lena", env=env)
    assert "PASS  held-out interviews are not training interviews" in checked.stdout.splitlines()
    assert checked.stderr.splitlines().count(shared_url_warning(held, training)) == 1

    # The same interview again is still refused, on its exchanges.
    copy = tmp_path / "copy.json"
    copy.write_text(json.dumps(INTERVIEWS[GARDEN]))
    again = run_cli("raft", "transcript:add", "lena", str(copy), "--benchmark", env=env)
    [line] = [line for line in again.stderr.splitlines() if "error" in line]
    assert again.returncode == 2 and line.startswith(f"raft: error: {copy} and {training}")
    assert "are the same interview (same url) with most of the same exchanges" in line
    assert "a held-out interview must not be trained on" in line
    assert sorted(p.name for p in (persona / "benchmark").iterdir()) == [
        "2023-01-10-held-out-podcast.json",
        source.name,
    ]


def test_bench_setup_takes_an_interview_that_shares_only_a_url(store, tmp_path):
    persona, env = copy_of(store, tmp_path)
    held = persona / "benchmark" / "2023-03-02-priya.json"
    held.write_text(json.dumps(ANOTHER))
    server = FaultyLLM()
    with serve_app(server.app()) as url:
        result = run_cli(
            "raft", "bench:setup", "lena", env={**env, "RAFT_GENERATOR": f"openai:faulty@{url}"}
        )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [shared_url_warning(held, persona / GARDEN)]  # once, not per stage
    items = [json.loads(line) for line in (persona / "bench" / "items.jsonl").open()]
    assert {item["id"].split("#")[0] for item in items} == {
        "2023-01-10-held-out-podcast",
        "2023-03-02-priya",
    }
