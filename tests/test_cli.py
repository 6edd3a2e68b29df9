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
