"""The dataset stage: RAFT training samples from the interviews, with recalled memories."""

from __future__ import annotations

import click

from raft.commands.options import STORE_EMBEDDER, backend_option
from raft.console import persona_argument, progress_bar, threads_option
from raft.conversation import DEFAULT_MEMORY_STYLE, MEMORY_STYLES, NO_MEMORIES, UNITS
from raft.errors import UsageError
from raft.paths import Persona


@click.command("ft:gen")
@persona_argument
@click.option("--oai", is_flag=True, help="Only rebuild the format files from raft.jsonl.")
@click.option("--generic", is_flag=True, help="Only write the generic raft.jsonl.")
@click.option("-k", "k", default=6, show_default=True, help="Memories retrieved per question.")
@click.option("--max-tokens", default=4096, show_default=True, help="Token budget per sample.")
@click.option(
    "--answer-reserve",
    default=512,
    show_default=True,
    help="Tokens of the budget kept for the answer: history is packed into the rest, the same "
    "way at inference, where there is no answer yet.",
)
@click.option(
    "--distractors",
    default=0.0,
    show_default=True,
    help="Chance that a sample also keeps memories that failed the answer-aware judge.",
)
@click.option(
    "--oracle-p",
    default=0.0,
    show_default=True,
    metavar="P",
    help="Chance that a real exchange's memory slot also holds the sentences of earlier "
    "writing nearest its real answer (the RAFT oracle; training only).",
)
@click.option("--context", is_flag=True, help="Add the previous answer to retrieval queries.")
@click.option(
    "--memories",
    "memory_style",
    type=click.Choice(MEMORY_STYLES),
    help=f"How a memory is written: the chunk's sentences closest to the question, verbatim "
    f"(extractive), or an LLM's first-person recollection (rephrased). [{DEFAULT_MEMORY_STYLE}]",
)
@click.option(
    "--unit",
    type=click.Choice(UNITS),
    default="chunk",
    show_default=True,
    help="What one memory is: a retrieved chunk, written as --memories says, or one of the "
    "author's paragraphs (of the 12 top chunks, the k nearest the question), shown whole with "
    "no extraction or rephrasing; the judges still run. docs/retrieval.md measured paragraphs "
    "making the training answers more likely than chunks on both personas.",
)
@click.option(
    "--no-memories",
    is_flag=True,
    help="Write the plain dataset into finetune/plain/: the same samples with no memory slot, "
    "the fine-tuning baseline RAFT is measured against.",
)
@click.option("--valid-fraction", default=0.1, show_default=True, help="Held for validation.")
@click.option(
    "--synthetic",
    default=0,
    show_default=True,
    metavar="N",
    help="Also turn up to N passages of the corpus into samples (synthetic question, real answer).",
)
@click.option(
    "--lenses",
    default="neutral",
    show_default=True,
    help="Comma-separated question styles: neutral, skeptic, layperson, follow_up.",
)
@click.option(
    "--synthetic-ratio",
    default=0.5,
    show_default=True,
    help="Largest share of synthetic samples in the training set.",
)
@click.option("--speech", is_flag=True, help="Drop headings and link lines from synthetic answers.")
@click.option(
    "--judge-batch/--no-judge-batch",
    default=True,
    show_default=True,
    help="Judge all memories of a question in one call per pass (a memory whose verdict is "
    "missing or malformed is judged alone), instead of one call each.",
)
@click.option(
    "--skip-below",
    type=float,
    default=0.0,
    show_default=True,
    metavar="D",
    help="Never rephrase or judge a passage more than D (cosine distance) farther from the "
    "question than its best hit; 0 judges all k.",
)
@click.option(
    "--history-block",
    type=int,
    default=4,
    show_default=True,
    metavar="N",
    help="Drop earlier exchanges that do not fit N at a time, so that consecutive prompts "
    "start alike and a prompt cache can reuse them.",
)
@backend_option("generator", "LLM for rephrase and judge.")
@backend_option("embedder", STORE_EMBEDDER)
@threads_option
def ft_gen(
    persona: Persona,
    oai: bool,
    generic: bool,
    k: int,
    max_tokens: int,
    answer_reserve: int,
    distractors: float,
    oracle_p: float,
    context: bool,
    memory_style: str | None,
    unit: str,
    no_memories: bool,
    valid_fraction: float,
    synthetic: int,
    lenses: str,
    synthetic_ratio: float,
    speech: bool,
    judge_batch: bool,
    skip_below: float,
    history_block: int,
    generator: str | None,
    embedder: str | None,
) -> None:
    """Build fine-tuning samples: retrieve, rephrase and judge memories for every exchange.

    Writes finetune/raft.jsonl (generic), openai(.valid).jsonl, messages(.valid).jsonl
    (TRL), sharegpt.json and stats.json. Re-running makes no model call already made.
    --no-memories writes the same files into finetune/plain/ with no memory slot.
    --synthetic N adds back-translated samples: an LLM writes the question an interviewer
    would have asked for a passage of the author's writing; the passage stays the answer.
    Example: raft ft:gen sample -k 4 --synthetic 10 --lenses neutral,skeptic
    """
    from raft.ftgen import GenSettings, run_ft_gen
    from raft.synthetic import LENSES, SyntheticSettings
    from raft.workspace import Workspace

    if oai and generic:
        raise UsageError("--oai and --generic exclude each other")
    if no_memories and memory_style:
        raise UsageError("--memories and --no-memories exclude each other")
    if not 0 <= distractors <= 1 or not 0 <= valid_fraction < 1 or k < 1 or max_tokens < 256:
        raise UsageError(
            "need 0 <= --distractors <= 1, 0 <= --valid-fraction < 1, -k >= 1, --max-tokens >= 256"
        )
    if not 0 <= oracle_p <= 1:
        raise UsageError("need 0 <= --oracle-p <= 1")
    if no_memories and oracle_p > 0:
        raise UsageError("--oracle-p needs memories: drop --no-memories or set --oracle-p 0")
    if no_memories and unit != "chunk":
        raise UsageError("--unit needs memories: drop --no-memories or --unit")
    if not 0 <= answer_reserve < max_tokens:
        raise UsageError("need 0 <= --answer-reserve < --max-tokens")
    chosen = tuple(dict.fromkeys(lens.strip() for lens in lenses.split(",") if lens.strip()))
    unknown = [lens for lens in chosen if lens not in LENSES]
    if unknown or not chosen:
        raise UsageError(f"unknown lens {', '.join(unknown)!r}: choose from {', '.join(LENSES)}")
    if synthetic < 0 or not 0 < synthetic_ratio <= 1:
        raise UsageError("need --synthetic >= 0 and 0 < --synthetic-ratio <= 1")
    if skip_below < 0 or history_block < 1:
        raise UsageError("need --skip-below >= 0 and --history-block >= 1")
    settings = GenSettings(
        k=k,
        max_tokens=max_tokens,
        reserve=answer_reserve,
        distractors=distractors,
        context=context,
        memory_style=NO_MEMORIES if no_memories else memory_style or DEFAULT_MEMORY_STYLE,
        valid_fraction=valid_fraction,
        synthetic=SyntheticSettings(
            n=synthetic, lenses=chosen, ratio=synthetic_ratio, speech=speech
        ),
        judge_batch=judge_batch,
        skip_below=skip_below,
        history_block=history_block,
        oracle_p=oracle_p,
        unit=unit,
    )
    only = "oai" if oai else "generic" if generic else None
    ws = Workspace.open(
        persona.require(), generator=generator, embedder=embedder, record_target=True
    )
    with progress_bar() as progress:
        stats, calls = run_ft_gen(ws, settings, only, progress)
    _print_summary(persona, stats, calls)


def _print_summary(persona: Persona, stats: dict, calls: int) -> None:
    m = stats["memories"]
    dropped = stats.get("review", {}).get("samples_dropped", 0)
    oracle_p = stats.get("spec", {}).get("oracle_p")
    click.echo(
        f"ft:gen {persona.name}: {stats['samples']} samples ({stats['real_samples']} real, "
        f"{stats['synthetic_samples']} synthetic) from {stats['interviews']} interviews; "
        f"memories {m['retrieved']} retrieved, {m['useful_by_question']} useful by question, "
        f"{m['consistent_with_answer']} consistent with the answer, {m['kept']} kept; "
        f"{stats['samples_truncated']} samples truncated; {calls} model calls"
        + (f"; {dropped} samples dropped in review" if dropped else "")
        + (f"; {stats['oracle_samples']} samples with the oracle" if oracle_p else "")
    )
    cost = stats.get("cost")
    if cost:
        each = cost["per_sample"]
        click.echo(
            f"cost per sample: {each['calls']:g} model calls, {each['evaluated']:,.0f} prompt "
            f"tokens evaluated (+{each['cached']:,.0f} from the prompt cache), "
            f"{each['completion']:,.0f} completion tokens, {each['seconds']:.1f} s"
        )
    for warning in stats.get("split", {}).get("warnings", []):
        click.echo(f"raft: warning: {warning}", err=True)
