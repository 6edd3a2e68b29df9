"""Atomic writes and JSON Lines: an interrupted command never leaves a half-written file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from raft.errors import RaftError

# mkstemp makes 0600 files; written files get the usual mode (0666 less the umask) instead.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# Failures of the disk, not of the program: reported as one line naming the file.
WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def write_failed(path: Path, exc: OSError) -> RaftError:
    """A clear error for a file that could not be written (disk full, read-only, ...)."""
    return RaftError(f"cannot write {path}: {exc.strerror or exc}")


@contextmanager
def atomic_open(path: Path, mode: str = "w", private: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`.
    `private` keeps it readable by its owner only (it holds tokens)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    try:
        encoding = None if "b" in mode else "utf-8"
        os.fchmod(fd, 0o600 if private else 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in WRITE_ERRORS:
            raise write_failed(path, exc) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def write_json(path: Path, data: Any, private: bool = False) -> None:
    with atomic_open(path, private=private) as handle:
        json.dump(data, handle, ensure_ascii=False, indent=2)
        handle.write("\n")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `PATH.lock` for a read-modify-write of `path`, so that
    threads and processes updating it at once lose no update (write it atomically)."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(path.with_name(path.name + ".lock"), "a")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSON Lines atomically; return how many were written."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Stream rows of a JSON Lines file; a bad line is an error naming file and line."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise RaftError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except RecursionError:  # json's decoder gives up on arrays nested thousands deep
                raise RaftError(f"{path}:{number}: not valid JSON (nested too deeply)") from None


def count_lines(path: Path) -> int:
    """Non-blank lines of a file (rows of a JSON Lines file), 0 when it does not exist."""
    if not Path(path).is_file():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for line in handle if line.strip())
