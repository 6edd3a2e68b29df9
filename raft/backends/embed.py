"""Embedding backends: MiniLM in-process (`local`) and OpenAI-compatible APIs, batched and cached.

The cache is per text, so embedding a corpus again only computes texts never seen before.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from raft.backends import models
from raft.backends.cache import Cache, cache_key
from raft.backends.openai_client import make_client
from raft.backends.spec import BackendSpec, parse_spec, redact, redact_url
from raft.errors import RaftError


class Embedder(Protocol):
    model_id: str  # names the exact model; recorded by collections and cache keys
    batch_size: int

    def embed(self, texts: list[str]) -> np.ndarray: ...  # (n, dim) float32, unit length


@cache
def _load_sentence_transformer(path: str) -> Any:
    # The model folder ships in a package; never let the hub be asked for anything.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging

    logging.disable_progress_bar()  # our own progress bar is the one that matters

    return SentenceTransformer(path, device="cpu", local_files_only=True)


PLAIN_MINILM = "local:all-MiniLM-L6-v2"


class LocalEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded on first use; or, given a
    folder, a fine-tuned copy of it (a retriever trained by `raft embed:train`)."""

    def __init__(self, batch_size: int = 64, path: Path | None = None, model_id: str = ""):
        self.path = path or models.minilm_dir()
        self.model_id = model_id or PLAIN_MINILM
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        model = _load_sentence_transformer(str(self.path))  # a str: a Path is taken for a hub id
        vectors = model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        return vectors.astype(np.float32)


class OpenAIEmbedder:
    """An embedding model behind the OpenAI API or an OpenAI-compatible server."""

    def __init__(self, model: str, url: str | None = None, batch_size: int = 256):
        self.model = model
        self.url = url  # as given, credentials and all: for the HTTP client only
        self.model_id = f"openai:{model}" + (f"@{redact_url(url)}" if url else "")
        self.batch_size = batch_size
        self._client: Any = None

    def embed(self, texts: list[str]) -> np.ndarray:
        import openai

        if self._client is None:
            self._client = make_client(self.url)
        try:
            out = self._client.embeddings.create(model=self.model, input=texts)
        except openai.APIError as exc:
            message = redact(exc.message)
            raise RaftError(f"{self.model_id}: {type(exc).__name__}: {message}") from None
        vectors = np.array([item.embedding for item in out.data], dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


class CachedEmbedder:
    """Any embedder behind the per-text cache; `calls` and `texts_embedded` count real work."""

    def __init__(self, inner: Embedder, cache: Cache | None = None):
        self.inner = inner
        self.cache = cache
        self.model_id = inner.model_id
        self.batch_size = inner.batch_size
        self.calls = 0
        self.texts_embedded = 0
        self._lock = threading.Lock()

    def _key(self, text: str) -> str:
        return cache_key(kind="embed", model=self.model_id, text=text)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings in input order; only texts missing from the cache reach the model."""
        keys = [self._key(text) for text in texts]
        found = self.cache.get_many(keys) if self.cache is not None else {}
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
        computed: dict[str, np.ndarray] = {}
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            vectors = self.inner.embed(batch)
            with self._lock:
                self.calls += 1
                self.texts_embedded += len(batch)
            computed.update(zip(batch, vectors, strict=True))
            if self.cache is not None:
                self.cache.put_many(
                    "embed",
                    [(self._key(t), v.tobytes()) for t, v in zip(batch, vectors, strict=True)],
                )
        rows = [
            computed[text] if text in computed else np.frombuffer(found[key], dtype=np.float32)
            for text, key in zip(texts, keys, strict=True)
        ]
        return np.vstack(rows) if rows else np.zeros((0, 0), dtype=np.float32)


def make_embedder(
    spec: BackendSpec | str, cache: Cache | None = None, models_dir: Path | None = None
) -> CachedEmbedder:
    """The embedder for a backend spec (`local[:MODEL]` or `openai:MODEL[@URL]`), behind the
    cache. `local:retriever:RUN` is the model in `models_dir/RUN/retriever/`; which run bare
    `local` means is the workspace's to resolve (raft.workspace), not this function's."""
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "local" and spec.model.startswith("retriever:"):
        inner: Embedder = LocalEmbedder(
            path=retriever_dir(spec, models_dir), model_id=f"local:{spec.model}"
        )
    elif spec.kind == "local":
        inner = LocalEmbedder()
    elif spec.kind == "openai":
        inner = OpenAIEmbedder(spec.model, spec.url)
    else:
        raise RaftError(f"embedder {spec}: GGUF embedders are not supported; use local or openai:")
    return CachedEmbedder(inner, cache)


def retriever_dir(spec: BackendSpec, models_dir: Path | None) -> Path:
    """The folder of a trained retriever, refused with the command that makes one if absent."""
    run = spec.model.removeprefix("retriever:")
    folder = models_dir / run / "retriever" if models_dir else None
    if folder is None or not (folder / "config.json").is_file():
        where = folder or f"models/{run}/retriever"
        raise RaftError(
            f"embedder {spec}: no trained retriever in {where}; train one with `raft "
            "embed:train NAME`, or choose embedder local:all-MiniLM-L6-v2"
        )
    return folder
