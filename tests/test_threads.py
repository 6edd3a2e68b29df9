"""--threads and RAFT_THREADS reach llama.cpp's context and torch; bad values exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import REPO, run_cli

# Runs `raft chat` in-process as the console script would, then reads the thread counts
# from llama.cpp's own context and from torch, in the same process.
PROBE = """
import json, os
from raft.backends.llm import _load_llama
from raft.backends.models import smollm2_gguf
from raft.cli import cli
from raft.console import run
from raft.threads import available_cores

def chat(*args):
    code = run(cli, "raft", ["chat", "lena", "--model", "local", "--no-memories",
                             "--max-tokens", "2", *args])
    assert code == 0 and _load_llama.cache_info().currsize == 1  # chat loaded the model
    import llama_cpp, torch  # after the command, as in the console script
    ctx = _load_llama(str(smollm2_gguf()), None).ctx
    return [llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx),
            torch.get_num_threads()]

seen = {"flag": chat("--threads", "1", "--once", "Hi")}  # RAFT_THREADS=2 is set too
seen["env"] = chat("--once", "Hi again")
del os.environ["RAFT_THREADS"]
seen["measured"] = chat("--once", "Hello")
seen["cores"] = available_cores()
print(json.dumps(seen))
"""


def test_threads_flag_beats_env_and_both_reach_llama_cpp_and_torch(lena):
    _, env = lena
    # Without a user's OMP_NUM_THREADS, which torch would otherwise keep when unset.
    inherited = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=inherited | env | {"RAFT_THREADS": "2"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    assert seen["flag"] == [1, 1, 1]
    # The same loaded model, told the new count before its next call.
    assert seen["env"] == [2, 2, 2]
    # Unset: llama.cpp takes the cores other processes leave free, measured before each
    # call, never fewer than 1 or more than there are; torch every core, whatever the load,
    # so that its numbers never depend on what else runs.
    assert all(1 <= n <= seen["cores"] for n in seen["measured"][:2])
    assert seen["measured"][2] == seen["cores"]


def test_bad_thread_counts_exit_2_naming_the_flag_or_variable(lena):
    _, env = lena
    result = run_cli("raft", "chat", "lena", "--threads", "0", "--once", "Hi", env=env)
    assert result.returncode == 2
    assert "--threads must be a whole number of at least 1, not '0'" in result.stderr
    result = run_cli("ratf", "run", "lena", env={**env, "RAFT_THREADS": "many"})
    assert result.returncode == 2
    assert "RAFT_THREADS must be a whole number of at least 1, not 'many'" in result.stderr
