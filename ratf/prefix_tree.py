"""Prefix-tree rows for batched answer likelihood: (prompt, answer) pairs that share a
prefix have it run once, and each token attends only to its own path from the root. The
rows are packed here, and turned into the tensors and attention masks that
`ratf.answer_scorer` runs on the accelerator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# A row's longest (its KV cache and its mask grow with it); one longer pair gets its own row.
ROW_LIMIT = 32768
# What running one token costs, in positions attended to under a mask: its matrix products
# are ~6 x hidden_size times one attention pair (12·d²·layers against 2·d·layers FLOPs), and
# masked attention runs well below the matrix products' speed, so a ~1B model's share is taken
# at about 2048.
EXCHANGE = 2048


@dataclass
class Row:
    """(prompt, answer) sequences packed as a prefix tree in one row of a batch: a prefix
    that sequences share is put in once, and each token attends only to the tokens on its
    own path from the root (itself included), at its depth as its position. Consecutive
    benchmark items of an interview share everything up to the newest exchange, and an
    item's real and shuffled answers share its whole prompt, so each shared token is run
    once, as a KV cache would, but many sequences to a forward pass.

    A sequence adds one segment: the tokens after the prefix it shares with the row, hung
    from the row position of that prefix's last token."""

    length: int = 0
    tokens: list[Any] = field(default_factory=list)  # per segment, its token ids
    starts: list[int] = field(default_factory=list)  # per segment, its first row position
    attach: list[int] = field(default_factory=list)  # per segment, its parent's position or -1
    # Per pair in the row: (its index, the positions whose logits predict its answer tokens).
    scored: list[tuple[int, Any]] = field(default_factory=list)


def pack_rows(
    pairs: Sequence[tuple[list[int], list[int]]], chunk: int, limit: int = ROW_LIMIT
) -> list[Row]:
    """(prompt ids, answer ids) pairs as prefix-tree rows. In sorted order, of all earlier
    sequences the one just before a sequence shares the longest prefix with it: that is the
    branch it hangs on. Once a row has a chunk's worth, a sequence starts a new row when its
    new tokens attending over the row's other branches (masked out, but computed) would cost
    more than running its shared prefix again; as does one that would take the row past
    `limit`."""
    import numpy as np

    order = sorted(range(len(pairs)), key=lambda i: pairs[i][0] + pairs[i][1])
    rows: list[Row] = []
    last = np.zeros(0, dtype=np.int64)  # the previous sequence in the current row
    last_path = last  # its row positions
    for i in order:
        prompt, answer = pairs[i]
        if not prompt or not answer:
            raise ValueError("an empty prompt or answer has no likelihood")
        sequence = np.asarray(prompt + answer, dtype=np.int64)
        shared = shared_prefix(last, sequence) if rows else 0
        new = len(sequence) - shared
        if not rows or (
            rows[-1].length + new > limit
            or (rows[-1].length >= chunk and new * (rows[-1].length - shared) > EXCHANGE * shared)
        ):
            rows.append(Row())
            shared = 0
        row = rows[-1]
        added = np.arange(row.length, row.length + len(sequence) - shared)
        path = np.concatenate([last_path[:shared], added])
        if len(added):  # else the very same sequence is already in the row
            row.tokens.append(sequence[shared:])
            row.starts.append(row.length)
            row.attach.append(int(last_path[shared - 1]) if shared else -1)
            row.length += len(added)
        # The logits at a position predict the token after it on its path.
        row.scored.append((i, path[len(prompt) - 1 : len(sequence) - 1]))
        last, last_path = sequence, path
    return rows


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many ids two sequences (lists or numpy arrays) share from the start."""
    import numpy as np

    n = min(len(a), len(b))
    differ = (np.asarray(a[:n]) != np.asarray(b[:n])).nonzero()[0]
    return int(differ[0]) if len(differ) else n


def sliding_window(config: Any) -> tuple[int | None, bool]:
    """The model's sliding attention window, if any layer has one, and whether its layers
    mix windowed and full attention (then each kind gets its own mask)."""
    window = getattr(config, "sliding_window", None)
    kinds = set(getattr(config, "layer_types", None) or [])
    if not window or (kinds and "sliding_attention" not in kinds):
        return None, False
    return int(window), len(kinds) > 1


class Tree:
    """A batch of rows as tensors on the device, padded to `width`: token ids, positions,
    each position's segment (-1: padding) and each segment's ancestors (a bool per row
    position)."""

    def __init__(self, batch: list[Row], width: int, device: Any):
        import numpy as np
        import torch

        count = max(len(row.starts) for row in batch)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        depths = np.zeros((len(batch), width), dtype=np.int64)
        segments = np.full((len(batch), width), -1, dtype=np.int64)
        ancestors = np.zeros((len(batch), count, width), dtype=bool)
        for b, row in enumerate(batch):
            for s, (tokens, start, attach) in enumerate(
                zip(row.tokens, row.starts, row.attach, strict=True)
            ):
                end = start + len(tokens)
                ids[b, start:end], segments[b, start:end] = tokens, s
                if attach >= 0:  # the parent's ancestors, and its own tokens up to `attach`
                    parent = segments[b, attach]
                    ancestors[b, s] = ancestors[b, parent]
                    ancestors[b, s, row.starts[parent] : attach + 1] = True
                depth = depths[b, attach] + 1 if attach >= 0 else 0
                depths[b, start:end] = np.arange(depth, depth + len(tokens))
        self.ids = torch.from_numpy(ids).to(device)
        self.depths = torch.from_numpy(depths).to(device)
        self.segments = torch.from_numpy(segments).to(device)
        self.ancestors = torch.from_numpy(ancestors).to(device)

    def mask(self, start: int, end: int, window: int | None, mixed: bool) -> Any:
        """Which positions up to `end` the positions `start:end` attend to, (rows, 1,
        queries, keys) of bools: their ancestors in the row's tree and the earlier tokens of
        their own segment; a padding position attends to itself only (a query with nothing
        to attend to gives NaN). `window` and `mixed` are the model's, from `sliding_window`."""
        import torch

        device = self.ids.device
        query = torch.arange(start, end, device=device)
        key = torch.arange(end, device=device)
        segment = self.segments[:, start:end]  # -1: padding
        rows = torch.arange(len(self.segments), device=device)[:, None]
        ancestors = self.ancestors[rows, segment.clamp(min=0), :end]
        own = (segment[:, :, None] == self.segments[:, None, :end]) & (
            key[None, None, :] <= query[None, :, None]
        )
        mask = ((ancestors | own) & (segment[:, :, None] >= 0)) | (
            key[None, None, :] == query[None, :, None]
        )
        mask = mask[:, None]
        if window is None:
            return mask
        # Windowed layers see only the last `window` positions of the path.
        depth = self.depths
        near = (depth[:, None, start:end, None] - depth[:, None, None, :end]) < window
        if mixed:
            return {"full_attention": mask, "sliding_attention": mask & near}
        return mask & near
