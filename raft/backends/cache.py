"""Content-addressed cache of model calls, one SQLite file per persona.

A key hashes everything that changes a call's output (backend, model, parameters,
input), so a re-run of any stage repeats no paid or slow call.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def cache_key(**parts: Any) -> str:
    """A stable hash of the parts (canonical JSON: sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Cache:
    """A key -> bytes store; safe to share between threads and processes."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if self.path != Path(":memory:"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS calls ("
            " key TEXT PRIMARY KEY, kind TEXT NOT NULL, value BLOB NOT NULL,"
            " created TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        self._db.commit()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite caps bound parameters
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                query = f"SELECT key, value FROM calls WHERE key IN ({marks})"
                found.update(self._db.execute(query, batch).fetchall())
        return found

    def put(self, key: str, kind: str, value: bytes) -> None:
        self.put_many(kind, [(key, value)])

    def put_many(self, kind: str, items: Iterable[tuple[str, bytes]]) -> None:
        rows = [(key, kind, value) for key, value in items]
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO calls (key, kind, value) VALUES (?, ?, ?)", rows
            )
            self._db.commit()

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
            query = "SELECT COUNT(*) FROM calls WHERE kind = ?"
            return self._db.execute(query, (kind,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
