"""Bounded concurrency, the one way every stage runs calls that wait on a model or server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

_worker = threading.local()


def bounded_map(
    work: Callable[[T], R],
    items: Iterable[T],
    limit: int,
    done: Callable[[R], None] | None = None,
) -> list[R]:
    """`work` on each item, at most `limit` at a time, results in order; `done` sees each
    result as it comes, in order.

    Called from inside another `bounded_map`, it runs in the calling worker: the outer map
    already uses the backend's concurrency, and a pool inside a pool would multiply it.
    """
    items = list(items)
    if limit <= 1 or len(items) <= 1 or getattr(_worker, "busy", False):
        results = []
        for item in items:
            results.append(work(item))
            if done:
                done(results[-1])
        return results

    def run(item: T) -> R:
        _worker.busy = True
        try:
            return work(item)
        finally:
            _worker.busy = False

    results = []
    with ThreadPoolExecutor(max_workers=min(limit, len(items))) as pool:
        for result in pool.map(run, items):
            results.append(result)
            if done:
                done(result)
    return results
