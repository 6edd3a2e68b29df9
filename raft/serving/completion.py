"""One completion of `raft serve`: recall and render as a training sample does, then the
reply piece by piece in a bounded pool of its own, handed to the event loop, and streamed as
OpenAI's server-sent chunks. A client that leaves stops its generation."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Any

from fastapi import Request

from raft.conversation import Exchange
from raft.memories import Memory
from raft.replica import Replica
from raft.serving.errors import Overloaded, failure_json


class Stopped(Exception):
    """The completion was stopped: its client left, or the server is shutting down."""


def memory_json(memory: Memory) -> dict[str, str]:
    return {
        "date": memory.date,
        "title": memory.title,
        "link": memory.link,
        "memory": memory.rephrased,
        "chunk_id": memory.chunk_id,
    }


def prepare(
    replica: Replica,
    pairs: list[tuple[str, str]],
    question: str,
    stop: threading.Event | None = None,
) -> tuple[list[Exchange], list[Memory], list[dict[str, str]]]:
    """Recall and render: what a training sample shows, without the answer.

    Earlier questions recall their memories again (cached calls), so the history carries
    the slots a training sample's history carries; but only those of the newest exchanges
    that fit the budgets without any slot: slots only add tokens, so an older exchange
    could never be packed, and recalling it would be wasted calls.
    """
    plain = [Exchange(q, a) for q, a in pairs]
    window = (len(replica.messages(plain, question, [])) - 2) // 2  # minus system, question
    history = plain[: len(plain) - window]
    for earlier, answer in pairs[len(plain) - window :]:
        if stop is not None and stop.is_set():
            raise Stopped
        history.append(Exchange(earlier, answer, replica.remember(earlier, history)))
    if stop is not None and stop.is_set():
        raise Stopped
    memories = replica.remember(question, history)
    return history, memories, replica.messages(history, question, memories)


class Completion:
    """One completion in the completions pool: recall, render, then the reply piece by
    piece, handed to the event loop through `events` as (kind, value): ("memories", list),
    ("piece", text)..., then ("end", None) or ("error", exception). Setting `stop` ends it
    between two steps (the backend stream is closed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.stop = threading.Event()

    def put(self, kind: str, value: Any = None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is closed: nobody is listening
            self.stop.set()

    def run(
        self, choose: Callable[[], Replica], pairs: list[tuple[str, str]], question: str
    ) -> None:
        """`choose` gives the replica, here in the pool: opening one loads a model."""
        try:
            replica = choose()
            _, memories, messages = prepare(replica, pairs, question, self.stop)
            self.put("memories", memories)
            stopped = False
            with closing(replica.stream(messages)) as pieces:
                for piece in pieces:
                    stopped = self.stop.is_set()
                    if stopped:
                        break
                    self.put("piece", piece)
            if stopped:
                raise Stopped
            self.put("end")
        except Stopped:  # for a client still waiting: the server is shutting down
            self.put("error", Overloaded("the completion was stopped", "stopped"))
        except Exception as exc:
            self.put("error", exc)

    async def cancel(self) -> None:
        self.stop.set()

    async def next(self, gone: asyncio.Future | None = None) -> tuple[str, Any]:
        """The next event; raises Stopped (and stops the work) when `gone` ends first."""
        if gone is None:
            return await self.events.get()
        getting = asyncio.ensure_future(self.events.get())
        await asyncio.wait({getting, gone}, return_when=asyncio.FIRST_COMPLETED)
        if getting.done():
            return getting.result()
        getting.cancel()
        self.stop.set()
        raise Stopped


class CompletionPool:
    """The completions running or waiting, at most `size`: more are refused with 503 at
    once. They run here, not in Starlette's shared thread pool, so nothing else waits for
    them; one thread per admitted completion, so a completion never waits for a thread
    while another holds the model's lock."""

    def __init__(self, size: int):
        self.size = size
        self.threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="raft-completion")
        self.slots = threading.BoundedSemaphore(size)
        self.running: set[Completion] = set()

    def start(
        self, choose: Callable[[], Replica], pairs: list[tuple[str, str]], question: str
    ) -> Completion:
        """A new completion, running in the pool; call from the event loop."""
        if not self.slots.acquire(blocking=False):
            raise Overloaded(
                f"the server is busy with {self.size} completions; retry shortly",
                "overloaded",
                {"Retry-After": "1"},
            )
        completion = Completion(asyncio.get_running_loop())
        self.running.add(completion)

        def work() -> None:
            try:
                completion.run(choose, pairs, question)
            finally:
                self.running.discard(completion)
                self.slots.release()

        try:
            self.threads.submit(work)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self.running.discard(completion)
            self.slots.release()
            raise Overloaded("the server is shutting down", "shutting_down") from None
        return completion

    def shutdown(self) -> None:
        """Stop every completion and take no more."""
        for completion in list(self.running):
            completion.stop.set()
        self.threads.shutdown(wait=False, cancel_futures=True)


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client has gone (call once the body has been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def stream_chunks(
    completion: Completion,
    first: tuple[str, Any],
    memories: list[Memory],
    ident: str,
    created: int,
    model_name: str,
) -> AsyncIterator[str]:
    """Server-sent events in OpenAI's chunk shape, ending with `[DONE]`; a failure midway
    is an `error` event before `[DONE]`."""

    def event(delta: dict[str, str], finish: str | None = None, **extra: Any) -> str:
        chunk = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(chunk)}\n\n"

    try:
        yield event(
            {"role": "assistant", "content": ""}, memories=[memory_json(m) for m in memories]
        )
        kind, value = first
        while True:
            if kind == "piece":
                yield event({"content": value})
            elif kind == "end":
                yield event({}, "stop")
                break
            else:
                yield f"data: {json.dumps(failure_json(value)[1])}\n\n"
                break
            kind, value = await completion.next()
        yield "data: [DONE]\n\n"
    finally:
        completion.stop.set()  # the client left, or the stream is done
