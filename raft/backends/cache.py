"""Content-addressed cache of model calls, one SQLite file per persona.

A key hashes everything that changes a call's output (backend, model, parameters,
input), so a re-run of any stage repeats no paid or slow call.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from raft.errors import RaftError


def request_text(**parts: Any) -> str:
    """The parts as canonical JSON (sorted keys, no whitespace): what a key hashes."""
    return json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def cache_key(**parts: Any) -> str:
    """A stable hash of the parts."""
    return key_of(request_text(**parts))


def key_of(request: str) -> str:
    return hashlib.sha256(request.encode("utf-8")).hexdigest()


class Cache:
    """A key -> bytes store; safe to share between threads and processes.

    Chat calls also keep their request text, so `raft check` can read what a stage sent.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._writing():
            if self.path != Path(":memory:"):
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
            try:
                # The first statement that reads the file: it finds out whether it is one.
                self._db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError:
                self._db.close()  # before anything is written to a file that is no cache
                raise
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls ("
                " key TEXT PRIMARY KEY, kind TEXT NOT NULL, value BLOB NOT NULL,"
                " created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, request TEXT)"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}
            if "request" not in columns:  # a cache made before requests were kept
                with suppress(sqlite3.OperationalError):  # another process added it first
                    self._db.execute("ALTER TABLE calls ADD COLUMN request TEXT")
            self._db.commit()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk or read-only folder becomes one clear error naming the cache file."""
        with self._reading():
            try:
                yield
            except (sqlite3.OperationalError, OSError) as exc:
                raise RaftError(f"cannot write {self.path}: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A file that is no SQLite database, or a damaged one, becomes one clear error
        naming it; it is left as it is, since it may be something the user wants back."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") not in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                raise
            raise RaftError(
                f"{self.path}: not a usable cache ({exc}); delete it to rebuild (cached calls "
                "will be made again)"
            ) from None

    def get(self, key: str) -> bytes | None:
        with self._lock, self._reading():
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        return self._select("value", keys)

    def _select(self, column: str, keys: Iterable[str]) -> dict[str, Any]:
        """key -> column for the keys that are cached."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock, self._reading():
            for start in range(0, len(keys), 500):  # SQLite caps bound parameters
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                query = f"SELECT key, {column} FROM calls WHERE key IN ({marks})"
                found.update(self._db.execute(query, batch).fetchall())
        return found

    def put(self, key: str, kind: str, value: bytes, request: str | None = None) -> None:
        with self._lock, self._writing():
            self._db.execute(
                "INSERT OR REPLACE INTO calls (key, kind, value, request) VALUES (?, ?, ?, ?)",
                (key, kind, value, request),
            )
            self._db.commit()

    def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        rows = [(key, kind, value) for key, value in items]
        with self._lock, self._writing():
            self._db.executemany(
                "INSERT OR REPLACE INTO calls (key, kind, value) VALUES (?, ?, ?)", rows
            )
            self._db.commit()

    def keep_requests(self, requests: dict[str, str]) -> None:
        """Record the request text of cached calls that lack it (made by an older raft)."""
        rows = [(request, key) for key, request in requests.items()]
        with self._lock, self._writing():
            self._db.executemany(
                "UPDATE calls SET request = ? WHERE key = ? AND request IS NULL", rows
            )
            self._db.commit()

    def requests(self, keys: Iterable[str]) -> dict[str, str | None]:
        """key -> request text (None when not recorded) for the keys that are cached."""
        return self._select("request", keys)

    def count(self, kind: str | None = None) -> int:
        with self._lock, self._reading():
            if kind is None:
                return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            query = "SELECT COUNT(*) FROM calls WHERE kind = ?"
            return self._db.execute(query, (kind,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
