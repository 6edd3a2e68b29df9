"""Fixtures shared by the robustness tests."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import run_cli


@pytest.fixture(scope="session")
def benched(generated, tmp_path_factory):
    """A copy of the ft:gen persona with its benchmark items built (no trained model, so
    `ratf run` replays the base model without and with memories); yields (folder, env)."""
    source, env, _ = generated
    data = tmp_path_factory.mktemp("benched") / "data"
    shutil.copytree(source, data / "lena")
    env = {**env, "RAFT_DATA_DIR": str(data)}
    result = run_cli("raft", "bench:setup", "lena", env=env)
    assert result.returncode == 0, result.stderr
    return data / "lena", env
