"""Teacher-forced answer likelihoods under one loaded model: the summed negative
log-likelihood of each (prompt, answer) pair's answer tokens, in prefix-tree batches
(`ratf.prefix_tree`) on an accelerator, or one sequence at a time on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from raft.conversation import Message
from ratf.prefix_tree import Row, Tree, pack_rows, shared_prefix, sliding_window


@dataclass(frozen=True)
class Likelihood:
    """The negative log-likelihood of one answer after one prompt."""

    nats: float  # summed over the answer's tokens
    tokens: int
    n_bytes: int  # of the answer in UTF-8

    @property
    def bits_per_byte(self) -> float:
        return self.nats / self.n_bytes / math.log(2)

    @property
    def nats_per_token(self) -> float:
        return self.nats / self.tokens


# Positions each row runs per forward pass, and tokens per forward pass (rows × chunk), unless
# told otherwise. On a GPU, enough that a ~1B model's matrix products keep it busy; on a CPU,
# what measured fastest with SmolLM2 (one row at a time).
CHUNK = {"cuda": 4096, "cpu": 512}
BATCH_TOKENS = {"cuda": 16384, "cpu": 512}
LOGSUMEXP_ROWS = 2048  # logits turned to float32 this many at a time, to bound memory


class AnswerScorer:
    """Teacher-forced answer likelihoods under one loaded model, on the model's device.

    Batched (on an accelerator), pairs are packed into prefix-tree rows (`Row`), and rows
    of alike length run side by side, `batch_tokens // chunk` at a time, a chunk of
    positions per forward pass, with a KV cache: each chunk attends to what its rows ran
    before, so a long row costs about what a causal pass over it does. In order (on a CPU),
    one sequence runs at a time after the cached prefix it shares with the one before.
    Either way only the positions that predict an answer token get logits, log-probabilities
    are taken from them in float32, and a pair's numbers do not depend on which other pairs
    are scored with it beyond float rounding."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_tokens: int | None = None,
        chunk: int | None = None,
        batched: bool | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        # Batched prefix-tree rows on an accelerator; one sequence at a time on a CPU, which
        # has no idle width for batching to fill, and where rows that attend across their
        # branches measured ~4% slower over the six systems of benchmarks/likelihood.py.
        self.batched = self.device.type != "cpu" if batched is None else batched
        kind = self.device.type if self.device.type in CHUNK else "cuda"
        self.batch_tokens = batch_tokens or BATCH_TOKENS[kind]
        self.chunk = min(chunk or CHUNK[kind], self.batch_tokens)
        self.window, self.mixed = sliding_window(model.config)
        self.positions = 0  # row positions run, padding included
        self.padding = 0  # of which padding

    def score(self, prompt: list[Message], answers: Sequence[str]) -> list[Likelihood]:
        """Each answer's likelihood after the prompt."""
        return self.score_pairs([(prompt, answer) for answer in answers])

    def score_pairs(
        self,
        pairs: Sequence[tuple[list[Message], str]],
        advance: Callable[[int], None] | None = None,
    ) -> list[Likelihood]:
        """Each (prompt, answer) pair's likelihood, in order; `advance(n)` is called as
        each batch of `n` pairs is done."""
        ids = self.pair_ids(pairs)
        nats = self.score_ids(ids, advance)
        return [
            Likelihood(n, len(a), len(answer.encode("utf-8")))
            for n, (_, a), (_, answer) in zip(nats, ids, pairs, strict=True)
        ]

    def pair_ids(
        self, pairs: Sequence[tuple[list[Message], str]]
    ) -> list[tuple[list[int], list[int]]]:
        """(prompt ids, answer ids) of each pair; a prompt given for several answers (the
        same list) is rendered once."""
        rendered: dict[int, list[int]] = {}
        for prompt, _ in pairs:
            if id(prompt) not in rendered:
                rendered[id(prompt)] = self.prompt_ids(prompt)
        return [(rendered[id(prompt)], self.answer_ids(answer)) for prompt, answer in pairs]

    def prompt_ids(self, prompt: list[Message]) -> list[int]:
        """The prompt as the chat template renders it, up to the assistant's header."""
        rendered = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(rendered["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        """The answer's tokens alone: no BOS, and no end-of-turn token is scored."""
        return list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])

    def score_ids(
        self,
        pairs: Sequence[tuple[list[int], list[int]]],
        advance: Callable[[int], None] | None = None,
    ) -> list[float]:
        """The summed negative log-likelihood, in nats, of each pair's answer ids after its
        prompt ids."""
        import torch

        nats = torch.zeros(len(pairs), dtype=torch.float64, device=self.device)
        if not self.batched:
            with torch.inference_mode():
                self.run_in_order(pairs, nats, advance)
            return nats.tolist()
        rows = sorted(pack_rows(pairs, self.chunk), key=lambda r: -r.length)
        # Longest first, so a batch too big for the device fails at once.
        per_batch = max(1, self.batch_tokens // self.chunk)
        with torch.inference_mode():
            for start in range(0, len(rows), per_batch):
                batch = rows[start : start + per_batch]
                self.run_batch(batch, pairs, nats)
                if advance is not None:
                    advance(sum(len(row.scored) for row in batch))
        return nats.tolist()

    def run_in_order(
        self,
        pairs: Sequence[tuple[list[int], list[int]]],
        nats: Any,
        advance: Callable[[int], None] | None,
    ) -> None:
        """One sequence at a time, in sorted order, keeping the KV cache of the one before:
        the prefix it shares is not run again (at least the prompt's last token is: its
        logits predict the answer), and no token attends to anything off its own path."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        cache, cached = DynamicCache(), []  # the ids whose keys and values the cache holds
        for i in sorted(range(len(pairs)), key=lambda i: pairs[i][0] + pairs[i][1]):
            prompt, answer = pairs[i]
            if not prompt or not answer:
                raise ValueError("an empty prompt or answer has no likelihood")
            sequence = prompt + answer
            keep = min(shared_prefix(cached, sequence), len(prompt) - 1)
            if keep == 0:
                cache = DynamicCache()
            elif keep < len(cached):
                cache.crop(keep - len(cached))  # negative: drop that many from the end
            new = sequence[keep:-1]  # the last answer token predicts nothing scored
            self.positions += len(new)
            out = self.model(
                input_ids=torch.tensor([new], device=self.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=len(answer),
            )
            cache, cached = out.past_key_values, sequence[:-1]
            target = torch.tensor(answer, device=self.device)
            nll = F.cross_entropy(out.logits[0].float(), target, reduction="sum")
            nats[i] = nll.double()
            if advance is not None:
                advance(1)

    def run_batch(
        self, batch: list[Row], pairs: Sequence[tuple[list[int], list[int]]], nats: Any
    ) -> None:
        """Run `batch` chunk by chunk, adding each scored pair's nats to `nats`."""
        import numpy as np
        import torch
        from transformers import DynamicCache

        device, width = self.device, batch[0].length
        self.positions += len(batch) * width
        self.padding += sum(width - row.length for row in batch)
        tree = Tree(batch, width, device)
        # Each scored token: its row, the position predicting it, its id and its pair.
        rows, positions, targets, owners = [], [], [], []
        for b, row in enumerate(batch):
            for pair, path in row.scored:
                rows.append(np.full(len(path), b))
                positions.append(path)
                targets.append(np.asarray(pairs[pair][1]))
                owners.append(np.full(len(path), pair))
        row_of = torch.from_numpy(np.concatenate(rows)).to(device)
        position = torch.from_numpy(np.concatenate(positions)).to(device)
        target = torch.from_numpy(np.concatenate(targets)).to(device)
        owner = torch.from_numpy(np.concatenate(owners)).to(device)
        keep = torch.zeros(len(batch), width, dtype=torch.bool, device=device)
        keep[row_of, position] = True
        # A cache that keeps every position: windowed layers are limited by their mask.
        cache = DynamicCache()
        for start in range(0, width, self.chunk):
            end = min(start + self.chunk, width)
            kept = keep[:, start:end]
            out = self.model(
                input_ids=tree.ids[:, start:end],
                position_ids=tree.depths[:, start:end],
                attention_mask=tree.mask(start, end, self.window, self.mixed),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=kept,  # a bool mask: logits of those positions only
            )
            cache = out.past_key_values
            if not kept.any():
                continue
            logits = out.logits.reshape(-1, out.logits.shape[-1])  # (kept positions, vocab)
            # Kept positions are flattened row by row: where each (row, position) landed.
            flat = torch.full(kept.shape, -1, dtype=torch.long, device=device)
            flat[kept] = torch.arange(logits.shape[0], device=device)
            here = (position >= start) & (position < end)
            where = flat[row_of[here], position[here] - start]
            # -log p = logsumexp(logits) - logit of the token, in float32: one position can
            # predict different tokens for different pairs (where their answers branch off).
            lse = torch.cat([torch.logsumexp(c.float(), -1) for c in logits.split(LOGSUMEXP_ROWS)])
            nll = lse[where] - logits[where, target[here]].float()
            nats.index_add_(0, owner[here], nll.double())
