"""One writer per persona: an advisory lock on `data/NAME/.lock`, taken with `fcntl.flock`.

Commands that write into a persona folder hold it exclusively; `chat` and `serve` hold it
shared, so readers run side by side but never beside a writer. A command that cannot have
the lock fails at once, naming the holder. A flock belongs to the open file, so the kernel
drops it when its process ends, even by SIGKILL: a stale lock never blocks anyone. The file
only says who holds the lock (one `pid mode command line` a line), for that message.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from raft.backends.spec import redact
from raft.errors import RaftError
from raft.paths import Persona

LOCK_FILE = ".lock"
EXCLUSIVE, SHARED = "exclusive", "shared"


class PersonaBusy(RaftError):
    """Another process holds the persona's lock in a mode that excludes this one."""


@contextmanager
def persona_lock(
    persona: Persona, shared: bool = False, command: str = "", create: bool = False
) -> Iterator[None]:
    """Hold the persona's lock, exclusive (a writer) or shared (a reader), or fail at once.

    `command` is recorded for the message another process shows when it is refused.
    `create` makes a missing persona folder (fetch starts a persona); otherwise a missing
    folder is the usual "unknown persona" error."""
    if not persona.root.is_dir():
        if not create:
            persona.require()
        persona.root.mkdir(parents=True, exist_ok=True)
    path = persona.root / LOCK_FILE
    fd = _open(path)
    if fd is None:  # a read-only folder without a lock file: no command can write there
        yield
        return
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PersonaBusy(
                f"{persona.root} is in use by {holder(path)}: try again when it has finished "
                "(one command at a time may write to a persona)"
            ) from None
        _record(fd, SHARED if shared else EXCLUSIVE, command)
        try:
            yield
        finally:
            _release(fd, shared)
    finally:
        os.close(fd)  # drops the flock, if the release above could not


def _open(path: Path) -> int | None:
    """The lock file for writing its record; read-only where the folder is (a flock works
    on either); None where it cannot even be created."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None


def _record(fd: int, mode: str, command: str) -> None:
    """Say who holds the lock: a writer replaces the record, a reader adds its line."""
    line = f"{os.getpid()} {mode} {' '.join(redact(command).split()) or '?'}\n"
    # Best effort: the record only improves a message, so a full disk or a read-only
    # folder must not stop the command (it meets those itself, with a clearer error).
    with suppress(OSError):
        if mode == EXCLUSIVE:
            os.ftruncate(fd, 0)
        os.write(fd, line.encode("utf-8", "replace"))


def _release(fd: int, shared: bool) -> None:
    """Clear the record when the last holder leaves; closing the file drops the lock."""
    with suppress(OSError):  # BlockingIOError: other readers still hold it, and keep theirs
        if shared:
            # Only the last reader may clear the readers' lines: it alone gets it exclusive.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process, alive
        return True
    return True


def holder(path: Path) -> str:
    """Who holds the lock, as its record says: '`raft serve lena` (pid 42)', or a vaguer
    phrase when nothing live is recorded (the holder writes its line just after locking)."""
    deadline = time.monotonic() + 1.0
    while True:
        found = _live_holders(path)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return "; ".join(f"`{command}` (pid {pid})" for pid, command in found) or "another process"


def _live_holders(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        pid, mode, command = ([*line.split(" ", 2), "", ""])[:3]
        if pid.isdigit() and mode in (EXCLUSIVE, SHARED):
            rows.append((int(pid), mode, command))
    # A writer's line is current only while it is the last one: readers append theirs only
    # once no writer holds the lock, so a writer's line before them is left by a killed one.
    if rows and rows[-1][1] == EXCLUSIVE:
        rows = rows[-1:]
    else:
        rows = [row for row in rows if row[1] == SHARED]
    found = {pid: command for pid, _, command in rows if _alive(pid)}
    return list(found.items())


def command_line() -> str:
    """This process's command line as typed (recorded with any credentials left out)."""
    import click

    context = click.get_current_context(silent=True)
    program = context.find_root().info_name if context else Path(sys.argv[0]).name
    return shlex.join([program or "raft", *sys.argv[1:]])


def hold_persona_locks(
    group: Any,
    exclusive: Iterable[str] = (),
    shared: Iterable[str] = (),
    creates: Iterable[str] = (),
) -> None:
    """Make the named commands of a click group hold their persona's lock while they run:
    `exclusive` ones write into the folder, `shared` ones only read it but must not see
    it change; `creates` may make the folder. The others (info, check, ...) take none."""
    creating = set(creates)
    for names, is_shared in ((exclusive, False), (shared, True)):
        for name in names:
            command = group.commands[name]
            command.callback = _locked(command.callback, is_shared, name in creating)


def _locked(callback: Callable[..., Any], shared: bool, create: bool) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, persona: Persona, **kwargs: Any) -> Any:
        with persona_lock(persona, shared=shared, command=command_line(), create=create):
            return callback(*args, persona=persona, **kwargs)

    return run
