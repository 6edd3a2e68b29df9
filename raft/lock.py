"""One writer per persona: an advisory lock on `data/NAME/.lock`, taken with `fcntl.flock`.

Commands that write into a persona folder hold it exclusively; `chat` and `serve` hold it
shared, so readers run side by side but never beside a writer. A command that cannot have
the lock fails at once, naming the holder. A flock belongs to the open file, so the kernel
drops it when its process ends, even by SIGKILL: a stale lock never blocks anyone. The file
only says who holds the lock (one `pid mode command line` a line, secrets left out), for
that message; it is private to its owner (0600) and never followed through a symlink.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import os
import re
import shlex
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NoReturn

from raft import distributed
from raft.backends.spec import redact
from raft.errors import RaftError
from raft.paths import Persona

LOCK_FILE = ".lock"
EXCLUSIVE, SHARED = "exclusive", "shared"
HIDDEN = "REDACTED"  # what the record shows for the value of an option that holds a secret
# Options whose value is a secret, by their parameter's name: api_key, and any later
# *_token, *_password, ... (not max_tokens).
_SECRET_NAME = re.compile(r"(?:^|_)(?:key|token|secret|password|passwd|credentials?)$")
# How long a reader retries while another reader holds the lock alone to rewrite the
# record (microseconds, unless the machine is very busy); a writer holds it far longer.
JOIN_WAIT = 0.5
# No symlink followed; and a FIFO planted there must not block the open.
_NOT_THROUGH = os.O_NOFOLLOW | os.O_NONBLOCK
# Commands that run under `accelerate launch` with only the main process writing; in any
# other command a second process is refused the lock like any other writer.
LAUNCHABLE = {"ft:run"}
RECORD_MAX = 65_536  # bytes of the record read for the message; live holders need far fewer


class PersonaBusy(RaftError):
    """Another process holds the persona's lock in a mode that excludes this one."""


@contextmanager
def persona_lock(
    persona: Persona, shared: bool = False, command: str = "", create: bool = False
) -> Iterator[None]:
    """Hold the persona's lock, exclusive (a writer) or shared (a reader), or fail at once.

    `command` is recorded for the message another process shows when it is refused.
    `create` makes a missing persona folder (fetch starts a persona); otherwise a missing
    folder is the usual "unknown persona" error. A folder made here for a command that then
    fails is removed again if it holds nothing but the lock file: a failed start leaves no
    persona behind."""
    made = False
    if not persona.root.is_dir():
        if not create:
            persona.require()
        persona.root.mkdir(parents=True, exist_ok=True)
        made = True
    path = persona.root / LOCK_FILE
    fd = _open(path)
    if fd is None:  # a read-only folder without a lock file: no command can write there
        yield
        return
    try:
        try:
            alone = _take(fd, shared)
        except BlockingIOError:
            raise PersonaBusy(
                f"{persona.root} is in use by {holder(fd)}: try again when it has finished "
                "(one command at a time may write to a persona)"
            ) from None
        _record(fd, SHARED if shared else EXCLUSIVE, command, alone)
        if shared and alone:
            # Linux converts a flock in one step: no writer can slip in between.
            fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield
        except BaseException:
            if made:
                _remove_if_bare(persona.root, path)  # while still holding the lock
            raise
        finally:
            _release(fd, shared)
    finally:
        os.close(fd)  # drops the flock, if the release above could not


def _remove_if_bare(folder: Path, lock: Path) -> None:
    """Remove the folder if the lock file is all it holds; anything else in it is kept."""
    with suppress(OSError):
        if [entry.name for entry in folder.iterdir()] == [lock.name]:
            lock.unlink()
            folder.rmdir()  # fails, and keeps the folder, if a file appeared meanwhile


def _open(path: Path) -> int | None:
    """The lock file for writing its record; read-only where the folder is (a flock works
    on either); None where it cannot even be created. A symlink or anything but a regular
    file is refused: opening it would write into (or create) whatever it points at."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _NOT_THROUGH, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            _refuse_odd(path, exc)
        try:
            fd = os.open(path, os.O_RDONLY | _NOT_THROUGH)
        except FileNotFoundError:
            return None
        except OSError as again:
            _refuse_odd(path, again)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO, a device
        os.close(fd)
        raise _not_a_file(path)
    with suppress(OSError):  # a lock file of an older raft, readable by all
        os.fchmod(fd, 0o600)
    return fd


def _refuse_odd(path: Path, exc: OSError) -> NoReturn:
    """A one-line error for a lock path that is a symlink or a folder; others go on up."""
    if exc.errno == errno.ELOOP:
        raise RaftError(
            f"{path} is a symbolic link: remove it (raft keeps its lock there, and writes "
            "through no link)"
        ) from None
    raise _not_a_file(path) if exc.errno == errno.EISDIR else exc


def _not_a_file(path: Path) -> RaftError:
    return RaftError(f"{path} is not a regular file: remove it (raft keeps its lock there)")


def _take(fd: int, shared: bool) -> bool:
    """Take the lock without waiting for its holder; True when this process has it alone
    (exclusive for now, so that it may rewrite the record), else it joins other readers.
    BlockingIOError when a holder excludes it."""
    deadline = time.monotonic() + JOIN_WAIT
    while True:
        with suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        if not shared:
            raise BlockingIOError
        with suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        if time.monotonic() > deadline:
            raise BlockingIOError
        time.sleep(0.02)


def _record(fd: int, mode: str, command: str, alone: bool) -> None:
    """Say who holds the lock. A holder alone replaces the record: every line in it is a
    dead holder's. A reader that joins others adds its line: rewriting the file could
    drop the line of a reader that joined meanwhile."""
    line = f"{os.getpid()} {mode} {' '.join(redact(command).split()) or '?'}\n"
    # Best effort: the record only improves a message, so a full disk or a read-only
    # folder must not stop the command (it meets those itself, with a clearer error).
    with suppress(OSError):
        if alone:
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


def holder(fd: int) -> str:
    """Who holds the lock, as its record says: '`raft serve lena` (pid 42)', or a vaguer
    phrase when nothing live is recorded (the holder writes its line just after locking)."""
    deadline = time.monotonic() + 1.0
    while True:
        found = _live_holders(fd)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return "; ".join(f"`{command}` (pid {pid})" for pid, command in found) or "another process"


def _live_holders(fd: int) -> list[tuple[int, str]]:
    """(pid, command) of each holder the record names that is still running."""
    try:  # through the descriptor opened without following links, not the path again
        text = os.pread(fd, RECORD_MAX, 0).decode("utf-8", "replace")
    except OSError:
        return []
    found: dict[int, str] = {}
    for line in text.splitlines():
        pid, mode, command = ([*line.split(" ", 2), "", ""])[:3]
        if pid.isdigit() and mode in (EXCLUSIVE, SHARED) and _alive(int(pid)):
            found[int(pid)] = command
    return list(found.items())


def command_line() -> str:
    """This process's command line as typed, the value of every option that holds a
    secret (`--api-key`) replaced; `_record` also redacts credentials in URLs."""
    import click

    context = click.get_current_context(silent=True)
    program = context.find_root().info_name if context else Path(sys.argv[0]).name
    return shlex.join([program or "raft", *hide_secrets(sys.argv[1:], _secret_options())])


def _secret_options() -> set[str]:
    """The option strings (`--api-key`) of the running command and its groups that take a
    secret as their value."""
    import click

    options: set[str] = set()
    context = click.get_current_context(silent=True)
    while context is not None:
        for param in context.command.params:
            if (
                isinstance(param, click.Option)
                and not param.is_flag
                and _SECRET_NAME.search(param.name or "")
            ):
                options.update(param.opts)
        context = context.parent
    return options


def hide_secrets(args: list[str], options: set[str]) -> list[str]:
    """`args` with the value of each of `options` (`--api-key KEY`, `--api-key=KEY`)
    replaced by REDACTED."""
    shown: list[str] = []
    value_next = False
    for arg in args:
        name, equals, _ = arg.partition("=")
        if value_next:
            shown.append(HIDDEN)
            value_next = False
        elif name in options:
            shown.append(f"{name}={HIDDEN}" if equals else arg)
            value_next = not equals
        else:
            shown.append(arg)
    return shown


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
            command.callback = _locked(
                command.callback, is_shared, name in creating, name in LAUNCHABLE
            )


def _locked(
    callback: Callable[..., Any], shared: bool, create: bool, launchable: bool = False
) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, persona: Persona, **kwargs: Any) -> Any:
        if launchable and not distributed.is_main():
            # Under `accelerate launch` every process runs the command and the main one
            # alone writes (raft.distributed): it holds the lock for all of them.
            return callback(*args, persona=persona, **kwargs)
        with persona_lock(persona, shared=shared, command=command_line(), create=create):
            return callback(*args, persona=persona, **kwargs)

    return run
