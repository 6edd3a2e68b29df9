"""The corpus stage: fetch the author's writing, chunk it, embed it, and search it."""

from __future__ import annotations

import click

from raft.commands.options import STORE_EMBEDDER, backend_option, iso_date
from raft.console import Tally, persona_argument, progress_bar, threads_option
from raft.paths import Persona


@click.command()
@persona_argument
@click.option(
    "--from",
    "sources",
    multiple=True,
    metavar="URL_OR_PATH",
    help="A Substack, RSS/Atom feed, site, web page, local file or folder (repeatable).",
)
@click.option("--per-host", default=4, show_default=True, help="Concurrent requests per host.")
@click.option(
    "--scrub",
    is_flag=True,
    help="Replace e-mail addresses, phone numbers, personal URL tokens and persona.toml's "
    "blocked_words with [email], [phone], [token], [blocked] before writing.",
)
def fetch(persona: Persona, sources: tuple[str, ...], per_host: int, scrub: bool) -> None:
    """Gather the author's writing into corpus.jsonl.

    Without --from, refreshes the sources recorded in persona.toml, or else
    https://NAME.substack.com. New sources are recorded. Re-running fetches only what is new.
    --scrub replaces personal data in each new document's title, link and text, now and in
    every later fetch (persona.toml records scrub = true); list names and places to hide as
    blocked_words = ["Jo Park", "Elm Street"] in persona.toml.
    Example: raft fetch sample --from data/sample/essays
    """
    from raft.config import update_config
    from raft.corpus import check_per_host, fetch_corpus, nothing_fetched
    from raft.scrub import chosen_scrubber, describe_counts
    from raft.sources.budget import file_limits

    check_per_host(per_host)  # before the progress bar, so the error stands alone
    file_limits()  # RAFT_MAX_FILE_*, likewise
    scrubber = chosen_scrubber(persona, scrub)
    with progress_bar() as progress:
        summary = fetch_corpus(
            persona, sources, per_host=per_host, progress=progress, scrubber=scrubber
        )
    for failure in summary.failures:
        click.echo(f"raft: warning: {failure.where}: {failure.reason}", err=True)
    known = f" ({summary.by_link} by link, {summary.by_text} by text)" if summary.skipped else ""
    click.echo(
        f"fetch {persona.name}: {summary.new} new, {summary.skipped} already in the corpus"
        f"{known}, {summary.paywalled} paywalled (teaser only), {len(summary.failures)} failed"
    )
    if summary.scrubbed is not None:
        click.echo(f"scrubbed {persona.name}: {describe_counts(summary.scrubbed)} replaced")
    if not summary.new and not summary.skipped:
        raise nothing_fetched(summary)
    if scrub:  # kept for every later fetch and import, once it has brought something in
        update_config(persona, scrub=True)


@click.command()
@persona_argument
@click.option("--max-tokens", default=512, show_default=True, help="Tokens per chunk at most.")
@click.option("--overlap", default=64, show_default=True, help="Tokens repeated between chunks.")
def chunk(persona: Persona, max_tokens: int, overlap: int) -> None:
    """Split corpus.jsonl into token-bounded chunks (chunks.jsonl), losing no text.

    Chunks end at paragraph, then sentence, then token boundaries.
    Example: raft chunk sample --max-tokens 256
    """
    from raft.chunking import chunk_corpus

    with progress_bar() as progress:
        stats = chunk_corpus(persona.require(), max_tokens, overlap, progress)
    click.echo(
        f"chunk {persona.name}: {stats.documents} documents -> {stats.chunks} chunks, "
        f"{stats.tokens} tokens"
    )


@click.command()
@persona_argument
@backend_option("embedder", "Backend spec (default: RAFT_EMBEDDER or local).")
@click.option("--rebuild", is_flag=True, help="Drop the collection and embed everything again.")
@threads_option
def embed(persona: Persona, embedder: str | None, rebuild: bool) -> None:
    """Embed new or changed chunks into the persona's ChromaDB collection.

    Uses data/NAME/chroma/, or the Chroma server at $RAFT_CHROMA_URL.
    Example: raft embed sample
    """
    from raft.corpus import embed_corpus
    from raft.files import count_lines
    from raft.store import require_chunks

    require_chunks(persona.require())  # before the progress bar, so the error stands alone
    total = count_lines(persona.chunks)
    with progress_bar() as progress:
        tally = Tally(progress, "embedding", total)
        stats = embed_corpus(persona, embedder, rebuild=rebuild, progress=tally.advance)
    click.echo(
        f"embed {persona.name}: {stats.added} added, {stats.updated} updated, "
        f"{stats.removed} removed, {stats.unchanged} unchanged ({stats.embedded} embedded)"
    )


@click.command()
@persona_argument
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="How many chunks to return.")
@click.option("--before", metavar="YYYY-MM-DD", help="Only writing dated strictly earlier.")
@backend_option("embedder", STORE_EMBEDDER)
@threads_option
def search(persona: Persona, query: str, k: int, before: str | None, embedder: str | None) -> None:
    """Retrieve the chunks of the author's writing nearest to QUERY.

    Example: raft search sample "what makes a thing yours" --before 2022-01-01
    """
    from raft.workspace import Workspace

    store = Workspace.open(persona.require(), embedder=embedder).store
    for hit in store.query(query, k=k, before_date=iso_date(before)):
        snippet = " ".join(hit.text.split())[:160]
        click.echo(f"{hit.date or 'undated':10}  {hit.distance:.3f}  {hit.title}  <{hit.link}>")
        click.echo(f"            {snippet}")


@click.command("embed:train")
@persona_argument
@click.option(
    "--epochs",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Passes over the pairs.",
)
@click.option(
    "--batch-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=2),
    help="Pairs per step; the others in a batch are each question's negatives.",
)
@backend_option("embedder", "The store's embedder, to find the pairs in. " + STORE_EMBEDDER)
@threads_option
def embed_train(persona: Persona, epochs: int, batch_size: int, embedder: str | None) -> None:
    """Train a retriever on the persona's own interviews: MiniLM fine-tuned so that each
    training question finds the earlier sentences nearest its real answer.

    Reads transcripts/ only, never the held-out benchmark/. Saves models/RUN/retriever/, the
    pairs it trained on in models/RUN/pairs.jsonl, and a record `raft models` lists. The store
    is left as it is: re-embed with `raft embed NAME --rebuild` to use the retriever (or keep
    the plain model with --embedder local:all-MiniLM-L6-v2).
    Example: raft embed:train sample --epochs 3
    """
    from raft.retriever import RetrieverSettings, train_retriever
    from raft.workspace import Workspace

    store = Workspace.open(persona.require(), embedder=embedder).store
    settings = RetrieverSettings(epochs=epochs, batch_size=batch_size)
    with progress_bar() as progress:
        record = train_retriever(persona, store, settings, progress)
    click.echo(
        f"embed:train {persona.name}: {record.id} trained on {record.params['pairs']} pairs "
        f"(loss {record.metrics['train_loss']:.3f}) -> {record.model}"
    )
    click.echo(
        f"run `raft embed {persona.name} --rebuild` to re-embed the store with it; until then "
        f"commands that embed say the store was built with another embedder "
        f"(--embedder local:all-MiniLM-L6-v2 keeps the plain model)"
    )
