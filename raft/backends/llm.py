"""Chat LLM backends: llama.cpp in-process (`local`, `gguf:PATH`) and OpenAI-compatible APIs.

Every backend answers `complete(messages, ...)`; `CachedLLM` puts the call cache in
front of any of them, and `complete_json` adds schema-constrained output with a repair pass.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from raft.backends import models
from raft.backends.cache import Cache, key_of, request_text
from raft.backends.openai_client import make_client
from raft.backends.spec import BackendSpec, parse_spec, redact, redact_url
from raft.backends.tokens import common_prefix
from raft.errors import RaftError
from raft.prompts import parse_json
from raft.threads import available_cores, chosen_threads, threads

Messages = list[dict[str, str]]


@dataclass
class Usage:
    """What model calls cost: tokens as the backend reports them, and wall time."""

    calls: int = 0
    prompt: int = 0  # prompt tokens sent
    cached: int = 0  # of which a KV or prompt cache served, so they were not evaluated
    completion: int = 0
    seconds: float = 0.0

    @property
    def evaluated(self) -> int:
        """Prompt tokens the model processed afresh: what a prompt cache cannot save."""
        return self.prompt - self.cached

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def row(self) -> dict[str, Any]:
        return asdict(self) | {"evaluated": self.evaluated, "seconds": round(self.seconds, 3)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Usage:
        return cls(**{f.name: row.get(f.name, 0) for f in fields(cls)})

    @classmethod
    def total(cls, usages: Iterable[Usage]) -> Usage:
        return sum(usages, cls())


@dataclass
class Reply:
    """A backend's answer to one call: the text and what it cost."""

    text: str
    usage: Usage


class LLM(Protocol):
    model_id: str  # names the exact model; part of every cache key
    concurrency: int  # how many calls may usefully run at once

    def complete(
        self,
        messages: Messages,
        *,
        schema: dict[str, Any] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int = 0,
        stop: list[str] | None = None,
    ) -> Reply: ...

    def stream(
        self,
        messages: Messages,
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int = 0,
        stop: list[str] | None = None,
    ) -> Iterator[str]: ...


def sampling(temperature: float, max_tokens: int, seed: int, stop: list[str] | None) -> dict:
    """Sampling parameters as sent and as cached; `stop` only when set, so that cache keys
    made before it existed stay valid."""
    params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
    if stop:
        params["stop"] = stop
    return params


class StructuredOutputError(RaftError):
    """The model did not produce JSON matching the schema, even after a repair attempt."""


_MODEL_LOCKS: dict[tuple[str, str | None], threading.Lock] = {}
_MODEL_LOCKS_GUARD = threading.Lock()


def _model_lock(path: str, lora_path: str | None) -> threading.Lock:
    """The one lock of the model `_load_llama(path, lora_path)` loads, shared by all its
    wrappers: a llama.cpp context must not run two completions at once."""
    with _MODEL_LOCKS_GUARD:
        return _MODEL_LOCKS.setdefault((path, lora_path), threading.Lock())


@cache
def _load_llama(path: str, lora_path: str | None) -> Any:
    from llama_cpp import Llama

    # Set again before every call (`_use_threads`): loading computes nothing.
    n_threads = chosen_threads() or available_cores()
    return Llama(
        model_path=path,
        lora_path=lora_path,
        n_ctx=int(os.environ.get("RAFT_N_CTX", "8192")),
        n_threads=n_threads,
        n_threads_batch=n_threads,
        verbose=False,
    )


def _use_threads(llama: Any) -> None:
    """Run the next call on the threads chosen, or on the cores free now: a thread per core
    while another process holds one stalls every step (see raft/threads.py)."""
    import llama_cpp

    n_threads = threads()
    if llama_cpp.llama_n_threads(llama.ctx) != n_threads:
        llama_cpp.llama_set_n_threads(llama.ctx, n_threads, n_threads)
        llama.n_threads = llama.n_threads_batch = n_threads


# Free loaded models while llama_cpp is still whole: left to interpreter shutdown, their
# finalizers run after the library's functions are gone and print a traceback.
atexit.register(_load_llama.cache_clear)


class LlamaCppLLM:
    """A GGUF model run in-process by llama.cpp, loaded on first use (cache hits never load it)."""

    concurrency = 1  # one context per model and process; requests queue on its lock

    def __init__(self, path: Path, lora_path: Path | None = None):
        self.path = Path(path)
        self.lora_path = Path(lora_path) if lora_path else None
        self.model_id = f"gguf:{self.path.name}:{models.fingerprint(self.path)}"
        if self.lora_path:
            self.model_id += f"+lora:{self.lora_path.name}:{models.fingerprint(self.lora_path)}"
        self._key = (str(self.path), str(self.lora_path) if self.lora_path else None)
        # Taken before loading too, so concurrent first calls load the model once.
        self._lock = _model_lock(*self._key)

    @property
    def llama(self) -> Any:
        return _load_llama(*self._key)

    def complete(
        self, messages, *, schema=None, temperature=0.0, max_tokens=512, seed=0, stop=None
    ):
        response_format = {"type": "json_object", "schema": schema} if schema else None
        with self._lock:
            llama = self.llama
            _use_threads(llama)
            kept = list(llama.input_ids[: llama.n_tokens])  # the tokens whose KV it holds
            try:
                out = llama.create_chat_completion(
                    messages=messages,
                    response_format=response_format,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    seed=seed,
                    stop=stop or [],
                )
            except ValueError as exc:  # llama.cpp reports an over-long prompt this way
                raise RaftError(f"{self.model_id}: {exc}") from None
            prompt = out["usage"]["prompt_tokens"]
            cached = common_prefix(kept, list(llama.input_ids[:prompt]))
        # llama-cpp-python evaluates only what follows the longest prefix its context holds,
        # and always the prompt's last token, to have fresh logits to sample from.
        usage = Usage(1, prompt, min(cached, prompt - 1), out["usage"]["completion_tokens"])
        return Reply(out["choices"][0]["message"]["content"] or "", usage)

    def stream(self, messages, *, temperature=0.0, max_tokens=512, seed=0, stop=None):
        with self._lock:  # held until the stream is drained or closed
            _use_threads(self.llama)
            try:
                chunks = self.llama.create_chat_completion(
                    messages=messages,
                    temperature=temperature,
                    max_tokens=max_tokens,
                    seed=seed,
                    stop=stop or [],
                    stream=True,
                )
                for chunk in chunks:
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            except ValueError as exc:
                raise RaftError(f"{self.model_id}: {exc}") from None


CACHE_PROMPT = {"cache_prompt": True}


class OpenAILLM:
    """A chat model behind the OpenAI API or any OpenAI-compatible server."""

    def __init__(self, model: str, url: str | None = None, concurrency: int | None = None):
        self.model = model
        self.url = url  # as given, credentials and all: for the HTTP client only
        self.model_id = f"openai:{model}" + (f"@{redact_url(url)}" if url else "")
        self.concurrency = concurrency or int(os.environ.get("RAFT_CONCURRENCY", "8"))
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._client: Any = None
        # OpenAI and vLLM take `json_schema`; llama.cpp's server only `json_object` + schema.
        # For other servers the first schema call finds out which, without retries.
        self._schema_format: str | None = None if url else "json_schema"
        self._cache_prompt = bool(url)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client(self.url)
        return self._client

    def _create(self, client: Any, messages: Messages, schema: dict | None, fmt: str, **params):
        extra: dict[str, Any] = {}
        if schema and fmt == "json_schema":
            schema_spec = {"name": "reply", "schema": schema, "strict": True}
            extra["response_format"] = {"type": "json_schema", "json_schema": schema_spec}
        elif schema:
            extra["response_format"] = {"type": "json_object", "schema": schema}
        out = self._send(client, model=self.model, messages=messages, **params, **extra)
        return Reply(out.choices[0].message.content or "", _usage(out.usage))

    def _send(self, client: Any, **request: Any) -> Any:
        """`chat.completions.create`; to a server of one's own (a URL) with `cache_prompt`,
        which makes llama.cpp's server keep the prompt's KV cache for the next request that
        shares its start. A server that refuses the field is asked again without it, and
        never sent it again; OpenAI caches stable prefixes by itself."""
        import openai

        if self._cache_prompt:
            try:
                return client.chat.completions.create(**request, extra_body=CACHE_PROMPT)
            except openai.APIStatusError as exc:
                if exc.status_code not in (400, 422) or "cache_prompt" not in str(exc.message):
                    raise
                self._cache_prompt = False
        return client.chat.completions.create(**request)

    def _probe_schema_format(self, messages: Messages, schema: dict, **params) -> Reply | None:
        """Try `json_schema` once; switch to `json_object` if the server rejects the field."""
        import openai

        try:
            reply = self._create(
                self.client.with_options(max_retries=0), messages, schema, "json_schema", **params
            )
        except openai.APIStatusError as exc:
            if exc.status_code in (400, 422) or "response_format" in str(exc.message):
                self._schema_format = "json_object"
            return None
        except openai.APIError:
            return None  # not an answer about the format; the normal path retries
        self._schema_format = "json_schema"
        return reply

    def complete(
        self, messages, *, schema=None, temperature=0.0, max_tokens=512, seed=0, stop=None
    ):
        import openai

        params = sampling(temperature, max_tokens, seed, stop)
        with self._slots:
            if schema and self._schema_format is None:
                reply = self._probe_schema_format(messages, schema, **params)
                if reply is not None:
                    return reply
            fmt = self._schema_format or "json_schema"
            try:
                return self._create(self.client, messages, schema, fmt, **params)
            except openai.APIError as exc:
                raise self._error(exc) from None

    def _error(self, exc: Exception) -> RaftError:
        message = redact(getattr(exc, "message", str(exc)))
        return RaftError(f"{self.model_id}: {type(exc).__name__}: {message}")

    def stream(self, messages, *, temperature=0.0, max_tokens=512, seed=0, stop=None):
        import openai

        params = sampling(temperature, max_tokens, seed, stop)
        with self._slots:
            try:
                # Closed when the caller stops reading, so the server stops generating.
                with self._send(
                    self.client, model=self.model, messages=messages, stream=True, **params
                ) as chunks:
                    for chunk in chunks:
                        if chunk.choices and chunk.choices[0].delta.content:
                            yield chunk.choices[0].delta.content
            except openai.APIError as exc:
                raise self._error(exc) from None


def _usage(reported: Any) -> Usage:
    """Usage as an OpenAI-compatible server reports it; `cached_tokens` is OpenAI's automatic
    prompt caching (and servers that copy it); servers that report no usage cost 0 tokens."""
    if reported is None:
        return Usage(calls=1)
    details = getattr(reported, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return Usage(1, reported.prompt_tokens or 0, cached, reported.completion_tokens or 0)


class CachedLLM:
    """Any LLM behind the call cache; `usage` adds up the calls that reached the model.

    A cached answer keeps what its call cost, so `recorded_usage` can tell what a dataset
    cost to make even when every call of this run came from the cache."""

    def __init__(self, inner: LLM, cache: Cache | None = None):
        self.inner = inner
        self.cache = cache
        self.model_id = inner.model_id
        self.concurrency = inner.concurrency
        self.usage = Usage()
        # Set to a dict to collect key -> request of every call served (ft:gen records
        # them so `raft check` can read what training sent); off for long-lived servers.
        self.ledger: dict[str, str] | None = None
        self._count_lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}

    def _key_lock(self, key: str) -> threading.Lock:
        with self._count_lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _request(
        self, messages: Messages, schema: dict | None, params: dict[str, Any]
    ) -> tuple[str, str]:
        """The call's cache key and request text."""
        request = request_text(
            kind="chat", model=self.model_id, messages=messages, schema=schema, **params
        )
        key = key_of(request)
        if self.ledger is not None:
            with self._count_lock:
                self.ledger[key] = request
        return key, request

    @property
    def calls(self) -> int:
        return self.usage.calls

    def _cached(self, key: str) -> str | None:
        hit = self.cache.get(key) if self.cache is not None else None
        return None if hit is None else json.loads(hit)["content"]

    def _store(self, key: str, request: str, reply: Reply) -> None:
        with self._count_lock:
            self.usage += reply.usage
        if self.cache is not None:
            row = {"content": reply.text, "usage": reply.usage.row()}
            self.cache.put(key, "chat", json.dumps(row).encode("utf-8"), request=request)

    def recorded_usage(self, keys: Iterable[str]) -> tuple[Usage, int]:
        """What the cached calls of `keys` cost when they were made, and how many of them
        were cached before costs were recorded (they count as no tokens)."""
        if self.cache is None:
            return Usage(), 0
        rows = [json.loads(value) for value in self.cache.get_many(keys).values()]
        return Usage.total(Usage.from_row(r["usage"]) for r in rows if "usage" in r), sum(
            "usage" not in r for r in rows
        )

    def complete(
        self, messages, *, schema=None, temperature=0.0, max_tokens=512, seed=0, stop=None
    ):
        params = sampling(temperature, max_tokens, seed, stop)
        key, request = self._request(messages, schema, params)
        text = self._cached(key)
        if text is not None:
            return text
        # Identical requests in flight at once make one call; the others wait for its answer.
        with self._key_lock(key):
            try:
                text = self._cached(key)
                if text is None:
                    started = time.perf_counter()
                    reply = self.inner.complete(messages, schema=schema, **params)
                    reply.usage.seconds = time.perf_counter() - started
                    self._store(key, request, reply)
                    text = reply.text
            finally:
                with self._count_lock:  # later callers find the answer in the cache
                    self._key_locks.pop(key, None)
        return text

    def stream(self, messages, *, temperature=0.0, max_tokens=512, seed=0, stop=None):
        """Text pieces as the model makes them; a cached reply comes as one piece.

        Shares cache entries with `complete`; a stream cut off early is not cached."""
        params = sampling(temperature, max_tokens, seed, stop)
        key, request = self._request(messages, None, params)
        text = self._cached(key)
        if text is not None:
            yield text
            return
        pieces, started = [], time.perf_counter()
        for piece in self.inner.stream(messages, **params):
            pieces.append(piece)
            yield piece
        # Streams report no token counts; the call and its time still count.
        usage = Usage(1, seconds=time.perf_counter() - started)
        self._store(key, request, Reply("".join(pieces), usage))


def complete_json(
    llm: CachedLLM, messages: Messages, schema: dict[str, Any], **params: Any
) -> dict[str, Any]:
    """Schema-constrained completion; an invalid reply gets one repair round, then an error."""
    import jsonschema

    text = llm.complete(messages, schema=schema, **params)
    try:
        return parse_json(text, schema)
    except (ValueError, jsonschema.ValidationError) as exc:
        problem = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
    repair = [
        *messages,
        {"role": "assistant", "content": text},
        {
            "role": "user",
            "content": f"That reply is not valid JSON for the schema ({problem}). "
            f"Reply with only a JSON object matching this schema:\n{json.dumps(schema)}",
        },
    ]
    text = llm.complete(repair, schema=schema, **params)
    try:
        return parse_json(text, schema)
    except (ValueError, jsonschema.ValidationError) as exc:
        raise StructuredOutputError(
            f"{llm.model_id} returned no valid JSON for the schema after a repair attempt: "
            f"{str(exc).splitlines()[0]}; reply began {text[:120]!r}"
        ) from None


def make_llm(spec: BackendSpec | str, cache: Cache | None = None) -> CachedLLM:
    """The LLM for a backend spec, behind the cache."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "local":
        inner: LLM = LlamaCppLLM(models.smollm2_gguf())
    elif spec.kind == "gguf":
        inner = LlamaCppLLM(Path(spec.model))
    else:
        inner = OpenAILLM(spec.model, spec.url)
    return CachedLLM(inner, cache)
