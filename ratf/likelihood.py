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

Every scored replica whose prompts show memories also gets a **ceiling** (`base+mem` →
`base+oracle`, `raft` → `raft+oracle`): the same model and prompt, with the memory slot
showing the earlier sentences nearest the real answer (`BenchItem.oracle`). It reads the
answer, so no replica can have it at inference; it bounds what memories can do, and the
fraction of that gap the retrieved memories close is reported beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raft.console import Tally, warn
from raft.conversation import Budget
from raft.errors import UsageError
from raft.paths import Persona
from raft.training.registry import SUCCEEDED, ModelRecord, load_records
from ratf.answer_scorer import AnswerScorer, Likelihood
from ratf.items import BenchItem
from ratf.local_model import LocalModel, device_label, load_base, load_tokenizer

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
    ceiling_of: str = ""  # a ceiling: the replica whose memories the oracle replaced
    none: str = ""  # a ceiling: the same model's replica without memories, if in the run


@dataclass(frozen=True)
class ReplicaModel:
    """How one replica of a run is scored: its model and the budgets its prompts were
    rendered under, or why it cannot be scored."""

    label: str
    memories: bool
    model: LocalModel | None = None
    budgets: tuple[Budget, ...] = ()
    reason: str = ""
    ceiling_of: str = ""  # a ceiling: this replica's oracle memories in the question's slot


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


def ceiling_label(system: str) -> str:
    """The ceiling's name: a `+mem` suffix becomes `+oracle`, else `+oracle` is added."""
    return system.removesuffix("+mem") + "+oracle"


def add_ceilings(
    persona: Persona, plans: list[ReplicaModel], items: list[BenchItem]
) -> list[ReplicaModel]:
    """The plans with each scorable memory replica followed by its ceiling; none, with one
    warning line, when the items were written without oracle memories."""
    shown = [p for p in plans if p.memories and not p.reason]
    if not shown:
        return plans
    if not any(item.oracle for item in items):
        warn(
            "no ceiling (+oracle) rows: the benchmark items have no oracle memories; "
            f"re-run `raft bench:setup {persona.name}`"
        )
        return plans
    taken = {p.label for p in plans}
    found = []
    for plan in plans:
        found.append(plan)
        name = ceiling_label(plan.label)
        if plan in shown and name not in taken:
            found.append(replace(plan, label=name, ceiling_of=plan.label))
    return found


def no_memory_partner(label: str, replicas: dict[str, dict[str, Any]]) -> str:
    """The replica of the run on the same model without memories, or ""."""
    spec = replicas[label]["spec"]
    return next(
        (n for n, row in replicas.items() if row["spec"] == spec and row.get("memories") is False),
        "",
    )


# -- Scoring every replica --------------------------------------------------------------


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
        prompt = item.prompt(list(replica.budgets), replica.memories, bool(replica.ceiling_of))
        pairs += [(prompt, item.answer), (prompt, shuffled[item.id])]
    found = scorer.score_pairs(pairs, advance)
    return [ItemLikelihood(item.id, found[2 * n], found[2 * n + 1]) for n, item in enumerate(items)]


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
    plans = add_ceilings(persona, plans, items)
    results = {p.label: SystemLikelihood(p.label, reason=p.reason) for p in plans if p.reason}
    scorable = [p for p in plans if not p.reason]
    tally = Tally(progress, "likelihood", 2 * len(items) * len(scorable))  # answers
    for group in by_key(scorable, lambda m: (m.base, m.gguf_file)).values():
        scored = score_on_base(group, items, shuffled, tally, dtype, batch_tokens)
        results |= {r.system: r for r in scored}
    for plan in plans:
        if plan.ceiling_of:
            results[plan.label].ceiling_of = plan.ceiling_of
            results[plan.label].none = no_memory_partner(plan.ceiling_of, replicas)
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
        ceiling = {"ceiling_of": result.ceiling_of} if result.ceiling_of else {}
        if result.reason:
            systems[system] = {"n/a": result.reason} | ceiling
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
        systems[system] |= ceiling
    return {
        "description": DESCRIPTION,
        "lower_is_better": True,
        "baseline": baseline if base_real is not None else None,
        "systems": systems,
        "gap_closed": gaps_closed(results),
    }


def gaps_closed(results: dict[str, SystemLikelihood]) -> dict[str, Any]:
    """Per memory replica with a ceiling and a no-memory partner scored: the fraction of the
    oracle gap its memories close, (none − retrieved) / (none − oracle) in bits/byte, with
    a paired 95% interval over items; `{"none", "oracle"}` name the systems it compares."""
    from ratf.stats import gap_closed

    def real(system: str) -> list[float] | None:
        found = results.get(system)
        if found is None or found.reason:
            return None
        return [i.real.bits_per_byte for i in found.items]

    closed = {}
    for ceiling in results.values():
        none, retrieved, oracle = real(ceiling.none), real(ceiling.ceiling_of), real(ceiling.system)
        if not ceiling.ceiling_of or none is None or retrieved is None or oracle is None:
            continue
        cell = gap_closed(none, retrieved, oracle)
        if cell is not None:
            closed[ceiling.ceiling_of] = {"none": ceiling.none, "oracle": ceiling.system}
            closed[ceiling.ceiling_of] |= asdict(cell)
    return closed
