"""The two CLIs as a user meets them: help text, name checks, exit codes."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli

RAFT_COMMANDS = [
    "fetch",
    "chunk",
    "embed",
    "transcript:add",
    "ft:gen",
    "ft:run",
    "bench:setup",
    "chat",
    "serve",
    "export",
    "check",
    "info",
    "models",
]


def test_raft_help_lists_every_command():
    result = run_cli("raft", "--help")
    assert result.returncode == 0
    for command in RAFT_COMMANDS:
        assert f"  {command} " in result.stdout, command


def test_ratf_help_lists_its_commands():
    result = run_cli("ratf", "--help")
    assert result.returncode == 0
    for command in ["run", "score", "report"]:
        assert f"  {command} " in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        "fetch",
        "chunk",
        "embed",
        "ft:gen",
        "ft:run",
        "export",
        "models",
        "chat",
        "serve",
        "bench:setup",
    ],
)
def test_each_stage_explains_itself(command):
    result = run_cli("raft", command, "--help")
    assert result.returncode == 0
    assert "Example: raft " + command in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "name", ["../x", "x/y", "Sample", "has space", "", "-x", "_x", "a" * 65, "caf\u00e9"]
)
@pytest.mark.parametrize("program,command", [("raft", "info"), ("raft", "ft:gen"), ("ratf", "run")])
def test_invalid_persona_name_is_refused_in_one_line(data_dir, program, command, name):
    result = run_cli(program, command, "--", name)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "invalid persona name" in lines[0] and repr(name) in lines[0]


def test_longest_valid_name_is_accepted(data_dir):
    (data_dir / ("a" * 64)).mkdir()
    assert run_cli("raft", "info", "a" * 64).returncode == 0


def test_unknown_persona_says_how_to_start(data_dir):
    result = run_cli("raft", "info", "nobody")
    assert result.returncode == 2
    assert "unknown persona 'nobody'" in result.stderr
    assert "raft fetch nobody" in result.stderr


def test_info_shows_files_and_backends(data_dir):
    persona = data_dir / "maren"
    (persona / "transcripts").mkdir(parents=True)
    (persona / "persona.toml").write_text(
        'name = "Maren Holt"\n[backends]\nembedder = "openai:e3"\n'
    )
    (persona / "transcripts" / "one.json").write_text("{}")
    result = run_cli("raft", "info", "maren", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "Maren Holt" in result.stdout
    assert "1 json files" in result.stdout
    assert "openai:e3" in result.stdout  # from persona.toml
    assert "local" in result.stdout  # generator default
