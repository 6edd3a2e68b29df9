"""`raft ft:run` under `accelerate launch` (or torchrun): who leads, and where processes meet.

Every process trains on its share of each batch; the main process (global rank 0) alone
holds the persona lock, writes the registry, the adapter and checkpoints, and prints. The
processes meet at a few points: the main process makes the run's record and hands it to
the others (one run id, from one clock), every process checks that its training files are
the ones the record names, and the others wait while the main one writes what they will
read. When a process fails the launcher stops the rest; a process left waiting at a
meeting point (its peer hung rather than died) gives up after TIMEOUT.

Outside a launch (one process) every function here is a no-op or runs its work directly,
and nothing imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from raft.errors import UsageError

# Where launchers put the global rank and size: torchrun (`accelerate launch`), then MPI
# (accelerate's multi-CPU launches), in the order accelerate itself reads them.
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# Long enough for the main process to convert or load a base model while the others wait,
# short enough that a hung peer does not hold the machines for the rest of the day.
TIMEOUT = timedelta(minutes=30)
T = TypeVar("T")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return default


def world_size() -> int:
    """How many processes train together (1 outside a launch)."""
    return _env_int(SIZE_VARIABLES, 1)


def rank() -> int:
    """This process's global rank (0 outside a launch)."""
    return _env_int(RANK_VARIABLES, 0)


def launched() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """True in the one process that writes and prints (and outside a launch)."""
    return rank() == 0


def join() -> None:
    """Join the launch's process group, once, with accelerate's choice of backend (NCCL on
    GPUs, gloo on CPUs, both where FSDP gathers full state dicts on the CPU) so that the
    trainer's accelerate state finds the group it would have made itself."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        return
    from accelerate import PartialState

    PartialState(timeout=TIMEOUT)


@dataclass(frozen=True)
class _Failed:
    """What the main process hands the others when its part failed: its exit status."""

    exit_code: int


def _status(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return int(getattr(exc, "exit_code", 1))


def from_main(make: Callable[[], T]) -> T:
    """`make()` run by the main process alone, its result handed to every process. When it
    fails, the main process raises (and says why) and the others exit with the same status
    without a word, so the user reads one message."""
    if not launched():
        return make()
    join()
    import torch.distributed as dist

    box: list[object] = [None]
    if is_main():
        try:
            box[0] = make()
        except BaseException as exc:
            dist.broadcast_object_list([_Failed(_status(exc))], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], _Failed):
        raise SystemExit(box[0].exit_code)
    return box[0]  # type: ignore[return-value]


def require_everywhere(problem: str) -> None:
    """Stop every process when any of them found a problem (`problem`: its message, "" for
    none). The main process raises a UsageError naming it once (with the ranks, where they
    differ); the others exit with status 2 without a word."""
    if not launched():
        if problem:
            raise UsageError(problem)
        return
    join()
    import torch.distributed as dist

    found: list[str] = [""] * world_size()
    dist.all_gather_object(found, problem)
    problems = {p for p in found if p}
    if not problems:
        return
    if not is_main():
        raise SystemExit(UsageError.exit_code)
    if len(problems) == 1 and all(found):
        raise UsageError(problems.pop())
    raise UsageError("; ".join(f"process {r}: {p}" for r, p in enumerate(found) if p))


def require_same(what: str, value: object) -> None:
    """Stop every process unless all of them hold the main process's `value` of `what`
    (for instance the digests of the training files each one reads)."""
    if not launched():
        return
    join()
    import torch.distributed as dist

    found: list[object] = [None] * world_size()
    dist.all_gather_object(found, value)
    differ = [str(r) for r, v in enumerate(found) if v != found[0]]
    require_everywhere(
        f"{what} differ between the main process and process {', '.join(differ)}: every "
        "process must read the same data (one shared data folder)"
        if differ
        else ""
    )


def barrier() -> None:
    """Wait until every process is here."""
    if launched():
        join()
        import torch.distributed as dist

        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """The block runs in the main process first, then in the others: for work whose results
    the main process writes (a cache) and the others then only read."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def leave() -> None:
    """Leave the process group at the end of a launched run (torch warns at exit if a
    group is still open)."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
