"""How many CPU threads local models use: llama.cpp (n_threads, n_threads_batch) and torch.

`--threads N`, else RAFT_THREADS, fixes one number for both. Without either, llama.cpp
takes the cores this process may use less those other processes are keeping busy,
measured before every call: its threads spin while they wait for each other, so a thread
on a core that another process holds stalls every step. A batched judge call with SmolLM2
(494 prompt + 55 completion tokens) on 2 cores: idle, 2.6 s with 2 threads and 3.9 s with
1; with another process keeping one core busy, a median 48 s (6 to 130 s) with 2 threads
and 3.9 s with 1. llama.cpp's greedy output does not depend on its thread count (each
output row is one thread's sum). torch's does, in the last bits, so torch takes every core
this process may use, fixed, and an embedding never changes with the machine's load.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from raft.errors import UsageError

ENV = "RAFT_THREADS"
# A core counts as taken when other processes used more than this share of one recently.
TAKEN_ABOVE = 0.25
SAMPLE_SECONDS = 0.1  # how long to watch some CPUs when there is no recent reading
STALE_SECONDS = 5.0  # a reading older than this says little about now

_chosen: int | None = None  # this process's --threads / RAFT_THREADS, if given
_USER_OMP = "OMP_NUM_THREADS" in os.environ  # the user's own setting, not one made here


def allowed_cpus() -> set[int] | None:
    """The CPUs this process may run on, where the system says (Linux)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity call
        return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota."""
    cpus = allowed_cpus()
    cores = len(cpus) if cpus else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def _cgroup_quota() -> int | None:
    """A container's CPU limit (`docker --cpus 2`), which affinity does not show."""
    try:
        limit, period = Path("/sys/fs/cgroup/cpu.max").read_text(encoding="utf-8").split()[:2]
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(1, math.ceil(int(limit) / int(period)))


@dataclass(frozen=True)
class Reading:
    wall: float  # seconds, monotonic
    busy: float  # CPU seconds the allowed CPUs have been busy
    own: float  # CPU seconds of this process
    running: int  # threads runnable on the whole machine right now, this one included


class CoreWatch:
    """The cores other processes are keeping busy on the CPUs this process may use: their
    busy time in /proc/stat less this process's own, over the time since the last look;
    with no recent look, the threads runnable right now less this one (or, where this
    process may use only some CPUs, a short watch of those)."""

    def __init__(self) -> None:
        self._last: Reading | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _read(cpus: set[int]) -> Reading | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                lines = handle.read().splitlines()
        except OSError:
            return None  # not Linux
        busy, running = 0, 1
        for line in lines:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                ticks = [int(x) for x in fields]
                busy += sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
            elif name == "procs_running":
                running = int(fields[0])
        own = os.times()
        ticks_per_second = os.sysconf("SC_CLK_TCK")
        return Reading(time.monotonic(), busy / ticks_per_second, own.user + own.system, running)

    @staticmethod
    def _rate(then: Reading, now: Reading) -> float:
        return max(0.0, (now.busy - then.busy) - (now.own - then.own)) / (now.wall - then.wall)

    def others(self) -> float | None:
        """Cores' worth of CPU other processes use lately; None where that cannot be read."""
        cpus = allowed_cpus()
        with self._lock:
            now = self._read(cpus) if cpus else None
            if now is None:
                return None
            last, self._last = self._last, now
            if last is not None and 0.05 <= now.wall - last.wall <= STALE_SECONDS:
                return self._rate(last, now)
            if len(cpus) == os.cpu_count():  # procs_running is the whole machine's
                return float(max(0, now.running - _own_running()))
            time.sleep(SAMPLE_SECONDS)
            self._last = self._read(cpus)
            return self._rate(now, self._last)


def _own_running() -> int:
    """This process's threads that are runnable now: this one, and any OpenMP worker of the
    last llama.cpp or torch call still spinning before it sleeps."""
    running = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/stat", encoding="ascii") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread has ended
        running += state == "R"
    return max(1, running)


_watch = CoreWatch()


def free_cores() -> int:
    """The cores left to this process: all it may use less those others keep busy, at
    least 1. Under a container's CPU quota, which shares the CPUs in time, or where it cannot
    be measured, all but one."""
    cores = available_cores()
    others = None if _cgroup_quota() else _watch.others()
    taken = 1 if others is None else math.ceil(others - TAKEN_ABOVE)
    return max(1, cores - max(0, taken))


def parse_threads(value: str | int, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise UsageError(f"{name} must be a whole number of at least 1, not {value!r}")
    return number


def _env_threads() -> int | None:
    value = os.environ.get(ENV, "").strip()
    return parse_threads(value, ENV) if value else None


def chosen_threads() -> int | None:
    """The thread count asked for: --threads, else RAFT_THREADS; None leaves it measured."""
    return _chosen if _chosen is not None else _env_threads()


def threads() -> int:
    """Threads for the next llama.cpp call: as chosen, else the cores free right now."""
    chosen = chosen_threads()
    return chosen if chosen is not None else free_cores()


def use_threads(count: int | None = None) -> int | None:
    """Fix this process's choice (`count`, else RAFT_THREADS) and give it to torch, else
    every core this process may use: at once if torch is loaded, else through
    OMP_NUM_THREADS when it loads. Torch keeps a user's own OMP_NUM_THREADS unless
    --threads or RAFT_THREADS says otherwise."""
    global _chosen
    _chosen = count if count is not None else _env_threads()
    if _chosen is None and _USER_OMP:
        return None  # torch keeps the user's OMP_NUM_THREADS
    # Not the load-dependent count: torch's sums depend on its thread count, and an
    # embedding or a score must not change with what else the machine runs (a resumed
    # ft:gen writes the same files as an uninterrupted one).
    torch_threads = _chosen if _chosen is not None else available_cores()
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(torch_threads)
    else:  # read by torch's OpenMP runtime when it loads, and by processes started from here
        os.environ["OMP_NUM_THREADS"] = str(torch_threads)
    return torch_threads
