"""`raft chat`: the replica in a terminal. Replies go to stdout as they stream; the
memories that entered the context go to stderr, so the output pipes cleanly."""

from __future__ import annotations

import sys

from raft.console import err
from raft.conversation import Exchange
from raft.memory import Memory
from raft.replica import Replica


def show_memories(memories: list[Memory]) -> None:
    for m in memories:
        where = m.link or m.title or m.chunk_id
        err.print(
            f"[memory {m.date or 'undated'} {where}] {m.rephrased}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def answer(replica: Replica, history: list[Exchange], question: str) -> Exchange:
    """Recall, show the memories, stream the reply to stdout; the turn for the history."""
    memories = replica.remember(question, history)
    show_memories(memories)
    pieces: list[str] = []
    for piece in replica.stream(replica.messages(history, question, memories)):
        if not pieces:
            piece = piece.lstrip()
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()
    return Exchange(question, "".join(pieces).strip(), memories)


def run_chat(replica: Replica, once: str | None) -> None:
    """One question with `once`, else a conversation until end of input or /quit."""
    if once is not None:
        answer(replica, [], once)
        return
    err.print(
        f"talking to {replica.target} ({replica.label}); /reset starts over, /quit or Ctrl-D ends",
        highlight=False,
    )
    history: list[Exchange] = []
    while True:
        err.print("you> ", end="", highlight=False)
        line = sys.stdin.readline()
        if not line or line.strip() == "/quit":
            return
        question = line.strip()
        if question == "/reset":
            history = []
        elif question:
            history.append(answer(replica, history, question))
