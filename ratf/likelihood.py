"""Answer likelihood: how probable the author's real answer is under each local replica.

For every benchmark item and replica, the real answer is teacher-forced after exactly the
prompt `ratf run` sent that replica (its budgets, its memories setting), and only the
answer's tokens are scored. The negative log-likelihood is reported in bits per UTF-8
byte, so models with different tokenizers compare, and in nats per token. **Lower is
closer**, unlike the other metrics. The same prompt is also scored against the author's
answer to a different question (the shuffled control of `ratf.scoring`): a model that
conditions on the question finds the real answer likelier than that one.

A replica whose model gives no log-probabilities of a given text (a remote chat API, a
`--predictions` file) is not scored, and says why; it never gets a number.

Local models run on the accelerator when there is one (bf16, or fp16 on a GPU without it),
else on the CPU in float32, and the summary records which device and dtype scored each
replica: on SmolLM2, bf16 moves an answer's bits/byte by under 0.005 against float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.console import Tally
from raft.conversation import Budget, Message
from raft.errors import UsageError
from raft.paths import Persona
from raft.training.registry import SUCCEEDED, ModelRecord, load_records
from ratf.items import BenchItem

if TYPE_CHECKING:
    from rich.progress import Progress

NO_LOGPROBS = "the OpenAI chat API returns no log-probabilities of a given answer"
NO_MODEL = "replies read from a file (--predictions): there is no model to score"
DESCRIPTION = (
    "bits per UTF-8 byte of the real answer, teacher-forced after the prompt the replica "
    "was sent (lower is closer)"
)
METRICS = ("bits_per_byte", "bits_per_byte_shuffled", "nats_per_token")


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


@dataclass(frozen=True)
class ItemLikelihood:
    id: str
    real: Likelihood
    shuffled: Likelihood  # the same prompt, the author's answer to another question


@dataclass
class SystemLikelihood:
    """One replica's likelihoods, item by item, or the reason it has none."""

    system: str
    items: list[ItemLikelihood] = field(default_factory=list)
    reason: str = ""  # why it was not scored; empty when it was
    device: str = ""  # where it was scored, e.g. "cuda (NVIDIA H100 80GB HBM3)"
    dtype: str = ""  # the weights' dtype it was scored in, e.g. "bfloat16"


@dataclass(frozen=True)
class LocalModel:
    """A model as transformers loads it: a checkpoint folder (or a GGUF file in one) and
    an optional peft adapter, whose tokenizer is saved beside it."""

    base: str
    gguf_file: str = ""
    adapter: str = ""

    @property
    def name(self) -> str:
        base = str(Path(self.base) / self.gguf_file) if self.gguf_file else self.base
        return f"{base} + {self.adapter}" if self.adapter else base


@dataclass(frozen=True)
class ReplicaModel:
    """How one replica of a run is scored: its model and the budgets its prompts were
    rendered under, or why it cannot be scored."""

    label: str
    memories: bool
    model: LocalModel | None = None
    budgets: tuple[Budget, ...] = ()
    reason: str = ""


# -- Which model a replica ran ----------------------------------------------------------


def find_model(persona: Persona, spec: str, record: ModelRecord | None) -> LocalModel | str:
    """The local model behind a replica's spec (a registry record or a backend spec), or
    the reason it has no log-probabilities to give. llama.cpp is never loaded: local
    models are read by transformers from the same weights generation used."""
    from raft.backends.spec import parse_spec

    if record is not None:
        if record.status != SUCCEEDED:
            return f"{record.id} is {record.status}, not a usable model"
        if record.venue != "local":
            return NO_LOGPROBS
        if not record.params.get("base_path") or not record.model:
            return f"{record.id} records no base model or adapter to load"
        return LocalModel(str(record.params["base_path"]), adapter=str(persona.root / record.model))
    if spec.startswith("openai:"):
        return NO_LOGPROBS
    try:
        parsed = parse_spec(spec)
    except UsageError as exc:
        return str(exc)
    if parsed.kind == "local":
        from raft.backends.models import smollm2_checkpoint

        # The checkpoint is converted from the GGUF that `local` generates with.
        return LocalModel(str(smollm2_checkpoint()))
    if parsed.kind == "gguf":
        path = Path(parsed.model)
        return LocalModel(str(path.parent), gguf_file=path.name)
    return NO_LOGPROBS


def plan_replica(
    persona: Persona,
    items: list[BenchItem],
    label: str,
    row: dict[str, Any],
    records: dict[str, ModelRecord],
) -> ReplicaModel:
    """A replica of `run.json` (`{"spec", "memories"}`) as it is scored."""
    from ratf.runner import replica_budgets

    if row.get("memories") is None:  # only a model replica records its memories setting
        return ReplicaModel(label, False, reason=NO_MODEL)
    spec = str(row["spec"])
    record = records.get(spec)
    model = find_model(persona, spec, record)
    if isinstance(model, str):
        return ReplicaModel(label, bool(row["memories"]), reason=model)
    # The budgets `ratf run` rendered this replica's prompts under, so the prompt is the same.
    budgets = tuple(replica_budgets(persona, items, record))
    return ReplicaModel(label, bool(row["memories"]), model, budgets)


# -- Scoring on one model ---------------------------------------------------------------

# Positions each row runs per forward pass, and tokens per forward pass (rows × chunk), unless
# told otherwise. On a GPU, enough that a ~1B model's matrix products keep it busy; on a CPU,
# what measured fastest with SmolLM2 (one row at a time).
CHUNK = {"cuda": 4096, "cpu": 512}
BATCH_TOKENS = {"cuda": 16384, "cpu": 512}
# A row's longest (its KV cache and its mask grow with it); one longer pair gets its own row.
ROW_LIMIT = 32768
# What running one token costs, in positions attended to under a mask: its matrix products
# are ~6 x hidden_size times one attention pair (12·d²·layers against 2·d·layers FLOPs), and
# masked attention runs well below the matrix products' speed, so a ~1B model's share is taken
# at about 2048.
EXCHANGE = 2048
LOGSUMEXP_ROWS = 2048  # logits turned to float32 this many at a time, to bound memory


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
                attention_mask=self.mask(tree, start, end),
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

    def mask(self, tree: Tree, start: int, end: int) -> Any:
        """Which positions up to `end` the positions `start:end` attend to, (rows, 1,
        queries, keys) of bools: their ancestors in the row's tree and the earlier tokens of
        their own segment; a padding position attends to itself only (a query with nothing
        to attend to gives NaN)."""
        import torch

        device = self.device
        query = torch.arange(start, end, device=device)
        key = torch.arange(end, device=device)
        segment = tree.segments[:, start:end]  # -1: padding
        rows = torch.arange(len(tree.segments), device=device)[:, None]
        ancestors = tree.ancestors[rows, segment.clamp(min=0), :end]
        own = (segment[:, :, None] == tree.segments[:, None, :end]) & (
            key[None, None, :] <= query[None, :, None]
        )
        mask = ((ancestors | own) & (segment[:, :, None] >= 0)) | (
            key[None, None, :] == query[None, :, None]
        )
        mask = mask[:, None]
        if self.window is None:
            return mask
        # Windowed layers see only the last `window` positions of the path.
        depth = tree.depths
        near = (depth[:, None, start:end, None] - depth[:, None, None, :end]) < self.window
        if self.mixed:
            return {"full_attention": mask, "sliding_attention": mask & near}
        return mask & near


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


def score_items(
    scorer: AnswerScorer,
    replica: ReplicaModel,
    items: list[BenchItem],
    shuffled: dict[str, str],
    advance: Callable[[int], None],
) -> list[ItemLikelihood]:
    """Every item's real and shuffled answer after the prompt this replica was sent."""
    pairs = []
    for item in items:
        prompt = item.prompt(list(replica.budgets), replica.memories)
        pairs += [(prompt, item.answer), (prompt, shuffled[item.id])]
    found = scorer.score_pairs(pairs, advance)
    return [ItemLikelihood(item.id, found[2 * n], found[2 * n + 1]) for n, item in enumerate(items)]


# -- Loading ----------------------------------------------------------------------------


def load_base(model: LocalModel, dtype: Any = None) -> Any:
    """The base model on the accelerator in its dtype (bf16 on a GPU that has it, fp16 on
    one that does not), else on the CPU in float32; `dtype` forces one (a test, a bench)."""
    from transformers import AutoModelForCausalLM

    from raft import accelerator
    from raft.console import quiet_libraries

    quiet_libraries()
    device = accelerator.device()
    options: dict[str, Any] = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    if device != "cpu":  # straight onto the GPU, not through host memory
        options["device_map"] = device
    loaded = AutoModelForCausalLM.from_pretrained(
        model.base,
        dtype=dtype or accelerator.dtype(),
        attn_implementation="sdpa",  # the prefix-tree rows need a mask of any shape
        **options,
    )
    return (loaded if "device_map" in options else loaded.to(device)).eval()


def device_label(model: Any) -> str:
    """Where a loaded model runs, as a user reads it: the GPU's name, or the CPU's."""
    from raft import accelerator

    where = next(model.parameters()).device
    if where.type == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(where)})"
    return accelerator.device_name() if where.type == "cpu" else str(where)


def load_tokenizer(model: LocalModel) -> Any:
    """The adapter's tokenizer (saved beside it by ft:run), else the base model's."""
    from transformers import AutoTokenizer

    if model.adapter and (Path(model.adapter) / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(model.adapter)
    gguf = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    return AutoTokenizer.from_pretrained(model.base, **gguf)


def by_key(replicas: list[ReplicaModel], key: Callable[[LocalModel], Any]) -> dict[Any, list]:
    groups: dict[Any, list[ReplicaModel]] = {}
    for replica in replicas:
        groups.setdefault(key(replica.model), []).append(replica)
    return groups


def score_on_base(
    replicas: list[ReplicaModel],
    items: list[BenchItem],
    shuffled: dict[str, str],
    tally: Tally,
    dtype: Any = None,
    batch_tokens: int | None = None,
) -> Iterator[SystemLikelihood]:
    """Replicas that share a base model: it is loaded once, and each adapter is put on it
    for its replicas and taken off again (cheaper than reloading the base for each)."""
    from raft.accelerator import dtype_name

    first = replicas[0].model
    try:
        base = load_base(first, dtype)
    except (OSError, ValueError) as exc:
        for replica in replicas:
            tally.advance(2 * len(items))
            yield SystemLikelihood(replica.label, reason=f"cannot load {first.name}: {exc}")
        return
    # Plain base first: an adapter is then put on and taken off without touching it.
    groups = by_key(replicas, lambda m: m.adapter)
    for adapter in sorted(groups):
        model = base
        try:
            if adapter:
                from peft import PeftModel

                # In the base's dtype: peft would keep a bf16 model's adapter in float32.
                model = PeftModel.from_pretrained(base, adapter, autocast_adapter_dtype=False)
                model = model.eval()
            tokenizer = load_tokenizer(groups[adapter][0].model)
        except (OSError, ValueError) as exc:
            for replica in groups[adapter]:
                tally.advance(2 * len(items))
                yield SystemLikelihood(replica.label, reason=f"cannot load {adapter}: {exc}")
            continue
        where, weights = device_label(base), dtype_name(next(base.parameters()).dtype)
        for replica in groups[adapter]:
            # Each replica's pairs batched on their own, so its numbers never depend on which
            # other replicas share its run (batch composition changes the float rounding).
            scorer = AnswerScorer(model, tokenizer, batch_tokens)
            scored = score_items(scorer, replica, items, shuffled, tally.advance)
            yield SystemLikelihood(replica.label, scored, device=where, dtype=weights)
        if adapter:
            base = model.unload()


def score_likelihood(
    persona: Persona,
    items: list[BenchItem],
    replicas: dict[str, dict[str, Any]],
    shuffled: dict[str, str],
    progress: Progress | None = None,
    dtype: Any = None,
    batch_tokens: int | None = None,
) -> dict[str, SystemLikelihood]:
    """Likelihoods of the real and shuffled answers for every replica of a run (`run.json`
    "replicas"), in the run's order; `shuffled` maps item ids to the shuffled answer.
    `dtype` and `batch_tokens` override the device's defaults (tests, benchmarks)."""
    for item in items:
        if not shuffled.get(item.id, "").strip():
            raise UsageError(
                f"item {item.id} has no other answer of the author's to compare with: add a "
                f"training interview to {persona.transcripts}"
            )
    records = {r.id: r for r in load_records(persona)}
    plans = [plan_replica(persona, items, label, row, records) for label, row in replicas.items()]
    results = {p.label: SystemLikelihood(p.label, reason=p.reason) for p in plans if p.reason}
    scorable = [p for p in plans if not p.reason]
    tally = Tally(progress, "likelihood", 2 * len(items) * len(scorable))  # answers
    for group in by_key(scorable, lambda m: (m.base, m.gguf_file)).values():
        scored = score_on_base(group, items, shuffled, tally, dtype, batch_tokens)
        results |= {r.system: r for r in scored}
    return {p.label: results[p.label] for p in plans}


# -- What is written --------------------------------------------------------------------


def likelihood_rows(results: dict[str, SystemLikelihood]) -> Iterator[dict[str, Any]]:
    """Per-item rows for `scores.jsonl`: bits per byte (real, shuffled), nats per token."""
    for system, result in results.items():
        for item in result.items:
            values = (
                item.real.bits_per_byte,
                item.shuffled.bits_per_byte,
                item.real.nats_per_token,
            )
            for metric, value in zip(METRICS, values, strict=True):
                yield {"id": item.id, "system": system, "metric": metric, "value": value}


def summarize_likelihood(
    results: dict[str, SystemLikelihood], baseline: str | None
) -> dict[str, Any]:
    """Per system: bits/byte and shuffled bits/byte with 95% intervals, the paired gap
    (shuffled − real: above 0 when the model conditions on the question), the paired
    difference to the baseline (below 0 is closer) and the device and dtype that scored it;
    `{"n/a": reason}` when not scored."""
    from ratf.stats import bootstrap_mean, paired_difference

    def interval(cell: Any) -> dict[str, Any]:
        return asdict(cell) | {"excludes_zero": cell.low > 0 or cell.high < 0}

    base = results.get(baseline) if baseline else None
    base_real = [i.real.bits_per_byte for i in base.items] if base and not base.reason else None
    systems: dict[str, Any] = {}
    for system, result in results.items():
        if result.reason:
            systems[system] = {"n/a": result.reason}
            continue
        real = [i.real.bits_per_byte for i in result.items]
        other = [i.shuffled.bits_per_byte for i in result.items]
        systems[system] = {
            "bits_per_byte": asdict(bootstrap_mean(real)),
            "shuffled": asdict(bootstrap_mean(other)),
            "gap": interval(paired_difference(other, real)),
            "nats_per_token": asdict(bootstrap_mean([i.real.nats_per_token for i in result.items])),
            "tokens": sum(i.real.tokens for i in result.items),
            "device": result.device,
            "dtype": result.dtype,
        }
        if base_real is not None and system != baseline:
            systems[system]["vs_baseline"] = interval(paired_difference(real, base_real))
    return {
        "description": DESCRIPTION,
        "lower_is_better": True,
        "baseline": baseline if base_real is not None else None,
        "systems": systems,
    }
