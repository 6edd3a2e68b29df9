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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.backends.tokens import common_prefix
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


class AnswerScorer:
    """Teacher-forced answer likelihoods under one loaded model.

    It keeps the KV cache of the last sequence it ran, since consecutive items of an
    interview share their prompt up to the newest exchange and the real and shuffled
    answers share the whole prompt: each shared token is run once. Reuse changes the
    numbers only by float rounding (well under 1e-4 bits/byte)."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.cache: Any = None
        self.cached: list[int] = []  # the token ids whose keys and values the cache holds

    def score(self, prompt: list[Message], answers: Sequence[str]) -> list[Likelihood]:
        """Each answer's likelihood after the prompt. The last answer stays in the cache:
        pass the real answer last, since the next item's prompt goes on with it."""
        prompt_ids = self.prompt_ids(prompt)
        first = self.run_prompt(prompt_ids)
        return [self.run_answer(prompt_ids, first, answer) for answer in answers]

    def prompt_ids(self, prompt: list[Message]) -> list[int]:
        """The prompt as the chat template renders it, up to the assistant's header."""
        rendered = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=True, return_dict=True
        )
        return list(rendered["input_ids"])

    def answer_ids(self, answer: str) -> list[int]:
        """The answer's tokens alone: no BOS, and no end-of-turn token is scored."""
        return list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])

    def run_prompt(self, prompt_ids: list[int]) -> Any:
        """Logits of the next token after the prompt, running only what is not cached."""
        shared = common_prefix(self.cached, prompt_ids)
        # At least the prompt's last token is run again: its logits predict the answer.
        self.truncate(min(shared, len(prompt_ids) - 1))
        return self.forward(prompt_ids[len(self.cached) :], last_only=True)[-1]

    def run_answer(self, prompt_ids: list[int], first: Any, answer: str) -> Likelihood:
        import torch
        import torch.nn.functional as F

        ids = self.answer_ids(answer)
        if not ids:
            raise ValueError("an empty answer has no likelihood")
        self.truncate(len(prompt_ids))
        logits = first[None]
        if len(ids) > 1:  # the last token predicts nothing that is scored
            logits = torch.cat([logits, self.forward(ids[:-1])])
        nats = F.cross_entropy(logits.float(), torch.tensor(ids), reduction="sum").item()
        return Likelihood(nats, len(ids), len(answer.encode("utf-8")))

    def forward(self, ids: list[int], last_only: bool = False) -> Any:
        """Run `ids` after the cached tokens; their logits (only the last one's when
        `last_only`: the prompt's other positions predict nothing scored)."""
        import torch

        out = self.model(
            input_ids=torch.tensor([ids]),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1 if last_only else 0,
        )
        self.cache = out.past_key_values
        self.cached += ids
        return out.logits[0]

    def truncate(self, length: int) -> None:
        """Keep the first `length` cached tokens."""
        if length <= 0 or not getattr(self.cache, "is_croppable", True):
            self.cache, self.cached = None, []
            return
        extra = len(self.cached) - length
        if extra > 0:
            self.cache.crop(-extra)  # negative: remove that many from the end
            self.cached = self.cached[:length]


def score_items(
    scorer: AnswerScorer,
    replica: ReplicaModel,
    items: list[BenchItem],
    shuffled: dict[str, str],
    advance: Callable[[], None],
) -> list[ItemLikelihood]:
    """Every item's real and shuffled answer after the prompt this replica was sent."""
    import torch

    out = []
    with torch.inference_mode():
        for item in items:
            prompt = item.prompt(list(replica.budgets), replica.memories)
            other, real = scorer.score(prompt, [shuffled[item.id], item.answer])
            out.append(ItemLikelihood(item.id, real, other))
            advance()
    return out


# -- Loading ----------------------------------------------------------------------------


def load_base(model: LocalModel) -> Any:
    """The base model in float32, as training and the GGUF conversion keep it."""
    import torch
    from transformers import AutoModelForCausalLM

    from raft.console import quiet_libraries

    quiet_libraries()
    gguf = {"gguf_file": model.gguf_file} if model.gguf_file else {}
    return AutoModelForCausalLM.from_pretrained(model.base, dtype=torch.float32, **gguf).eval()


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
) -> Iterator[SystemLikelihood]:
    """Replicas that share a base model: it is loaded once, and each adapter is put on it
    for its replicas and taken off again (cheaper than reloading the base for each)."""
    first = replicas[0].model
    try:
        base = load_base(first)
    except (OSError, ValueError) as exc:
        for replica in replicas:
            tally.advance(len(items))
            yield SystemLikelihood(replica.label, reason=f"cannot load {first.name}: {exc}")
        return
    # Plain base first: an adapter is then put on and taken off without touching it.
    groups = by_key(replicas, lambda m: m.adapter)
    for adapter in sorted(groups):
        model = base
        try:
            if adapter:
                from peft import PeftModel

                model = PeftModel.from_pretrained(base, adapter).eval()
            tokenizer = load_tokenizer(groups[adapter][0].model)
        except (OSError, ValueError) as exc:
            for replica in groups[adapter]:
                tally.advance(len(items))
                yield SystemLikelihood(replica.label, reason=f"cannot load {adapter}: {exc}")
            continue
        for replica in groups[adapter]:
            # A scorer per replica, so one replica's numbers never depend on which other
            # replicas share its run (the cache would carry rounding across them).
            scorer = AnswerScorer(model, tokenizer)
            scored = score_items(scorer, replica, items, shuffled, tally.advance)
            yield SystemLikelihood(replica.label, scored)
        if adapter:
            base = model.unload()


def score_likelihood(
    persona: Persona,
    items: list[BenchItem],
    replicas: dict[str, dict[str, Any]],
    shuffled: dict[str, str],
    progress: Progress | None = None,
) -> dict[str, SystemLikelihood]:
    """Likelihoods of the real and shuffled answers for every replica of a run (`run.json`
    "replicas"), in the run's order; `shuffled` maps item ids to the shuffled answer."""
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
    tally = Tally(progress, "likelihood", len(items) * len(scorable))
    for group in by_key(scorable, lambda m: (m.base, m.gguf_file)).values():
        results |= {r.system: r for r in score_on_base(group, items, shuffled, tally)}
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
    (shuffled − real: above 0 when the model conditions on the question) and the paired
    difference to the baseline (below 0 is closer); `{"n/a": reason}` when not scored."""
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
        }
        if base_real is not None and system != baseline:
            systems[system]["vs_baseline"] = interval(paired_difference(real, base_real))
    return {
        "description": DESCRIPTION,
        "lower_is_better": True,
        "baseline": baseline if base_real is not None else None,
        "systems": systems,
    }
