"""The benchmark stage: RATF items from the held-out interviews (`ratf` runs and scores them)."""

from __future__ import annotations

import click

from raft.commands.options import backend_option
from raft.console import persona_argument, progress_bar, threads_option
from raft.errors import UsageError
from raft.paths import Persona


@click.command("bench:setup")
@persona_argument
@click.option("--oai", is_flag=True, help="Only rebuild the OpenAI prompt files from items.jsonl.")
@click.option("--generic", is_flag=True, help="Only write the generic bench/items.jsonl.")
@backend_option("generator", "Override the training data's generator (warns).")
@threads_option
def bench_setup(persona: Persona, oai: bool, generic: bool, generator: str | None) -> None:
    """Build RATF benchmark items from the held-out interviews in benchmark/.

    Per exchange: the question, the real answer, the real history so far, and the memories
    recalled as at inference (writing dated before the interview, judged from the question
    alone). Refuses when a held-out interview is also in training data or in the corpus.
    Writes bench/items.jsonl, bench/openai.jsonl (prompts with memories) and
    bench/openai.no-memories.jsonl; --generic only the first, --oai only the other two
    (from the existing items, without a model call).
    Example: raft bench:setup sample
    """
    from ratf.items import build_items

    if oai and generic:
        raise UsageError("--oai and --generic exclude each other")
    only = "oai" if oai else "generic" if generic else None
    with progress_bar() as progress:
        items = build_items(persona.require(), only, generator, progress)
    kept = sum(len(i.kept) for i in items)
    interviews = len({i.interview for i in items})
    click.echo(
        f"bench:setup {persona.name}: {len(items)} items from {interviews} held-out "
        f"interview{'s' if interviews != 1 else ''}, "
        f"{kept} memories kept -> {persona.bench}"
    )
