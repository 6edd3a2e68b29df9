"""Setup's check of the llama.cpp build: the bundled SmolLM2 answers three chat completions
in a row in one context (a build for the wrong CPU crashes from the second on)."""

import sys

from llama_cpp import Llama

from raft.backends.models import smollm2_gguf
from raft.errors import UsageError
from raft.threads import threads

try:
    n_threads = threads()  # RAFT_THREADS, else the cores other processes leave free
except UsageError as exc:
    print(f"setup: {exc}", file=sys.stderr)
    sys.exit(2)  # the setting is wrong, not the build: setup stops instead of rebuilding
llama = Llama(
    model_path=str(smollm2_gguf()),
    n_ctx=2048,
    n_threads=n_threads,
    n_threads_batch=n_threads,
    verbose=False,
)
for n in range(3):
    messages = [{"role": "user", "content": f"Say hello number {n}."}]
    llama.create_chat_completion(messages=messages, max_tokens=16)
print("setup: llama.cpp answers", file=sys.stderr)
