"""The `raft` command line: thin commands that parse, call one function, and report."""

from __future__ import annotations

import sys

import click

from raft.console import Tally, persona_argument, progress_bar, run
from raft.conversation import DEFAULT_MEMORY_STYLE, MEMORY_STYLES, NO_MEMORIES
from raft.errors import RaftError, UsageError
from raft.lock import hold_persona_locks
from raft.paths import DATASETS, Persona
from raft.threads import threads_option


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="raft-toolkit", prog_name="raft")
def cli(debug: bool) -> None:
    """RAFT: build a conversational replica of a writer from their writing and interviews.

    Every command takes the persona NAME first; its files live in $RAFT_DATA_DIR/NAME
    (default ./data/NAME). Pipeline: fetch -> chunk -> embed -> ft:gen -> ft:run -> chat.
    """


@cli.command()
@persona_argument
def info(persona: Persona) -> None:
    """Show a persona's files, chosen backends and cache.

    Example: raft info sample
    """
    from raft.status import print_status

    print_status(persona.require())


@cli.command()
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


@cli.command()
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


@cli.command()
@persona_argument
@click.option("--embedder", metavar="SPEC", help="Backend spec (default: RAFT_EMBEDDER or local).")
@click.option("--rebuild", is_flag=True, help="Drop the collection and embed everything again.")
@threads_option
def embed(persona: Persona, embedder: str | None, rebuild: bool) -> None:
    """Embed new or changed chunks into the persona's ChromaDB collection.

    Uses data/NAME/chroma/, or the Chroma server at $RAFT_CHROMA_URL.
    Example: raft embed sample
    """
    from raft.files import count_lines
    from raft.store import embed_corpus, require_chunks

    require_chunks(persona.require())  # before the progress bar, so the error stands alone
    total = count_lines(persona.chunks)
    with progress_bar() as progress:
        tally = Tally(progress, "embedding", total)
        stats = embed_corpus(persona, embedder, rebuild=rebuild, progress=tally.advance)
    click.echo(
        f"embed {persona.name}: {stats.added} added, {stats.updated} updated, "
        f"{stats.removed} removed, {stats.unchanged} unchanged ({stats.embedded} embedded)"
    )


@cli.command()
@persona_argument
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, help="How many chunks to return.")
@click.option("--before", metavar="YYYY-MM-DD", help="Only writing dated strictly earlier.")
@click.option("--embedder", metavar="SPEC", help="Must match the one that built the store.")
@threads_option
def search(persona: Persona, query: str, k: int, before: str | None, embedder: str | None) -> None:
    """Retrieve the chunks of the author's writing nearest to QUERY.

    Example: raft search sample "what makes a thing yours" --before 2022-01-01
    """
    from raft.config import persona_embedder
    from raft.store import Store

    store = Store(persona.require(), persona_embedder(persona, embedder))
    for hit in store.query(query, k=k, before_date=_iso_date(before)):
        snippet = " ".join(hit.text.split())[:160]
        click.echo(f"{hit.date or 'undated':10}  {hit.distance:.3f}  {hit.title}  <{hit.link}>")
        click.echo(f"            {snippet}")


def _iso_date(value: str | None) -> str | None:
    from raft.dates import normalize_date

    if value and not normalize_date(value):
        raise UsageError(f"not a date: {value!r} (use YYYY-MM-DD)")
    return normalize_date(value) if value else None


@cli.command("transcript:add")
@persona_argument
@click.argument("source", metavar="SOURCE")
@click.option("--benchmark", is_flag=True, help="Hold the interview out for RATF.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "vtt", "srt", "html", "text"]),
    help="Read SOURCE as this format (default: detected).",
)
@click.option(
    "--interviewer",
    metavar="NAME",
    help="Who asks (default: the one other speaker the source names, else the page's author).",
)
@click.option(
    "--target", metavar="NAME", help="The author's label (default: name in persona.toml)."
)
@click.option(
    "--date",
    "when",
    metavar="YYYY-MM-DD",
    help="When the interview took place (default: the page's date).",
)
@click.option("--url", default="", help="Where it was published (default: the URL read).")
@click.option(
    "--assign-speakers",
    is_flag=True,
    help="A source that names no one: a model labels each paragraph (or caption turn, where "
    "`>>` or `- ` marks a new speaker) question or answer.",
)
@click.option("--generator", metavar="SPEC", help="The LLM for --assign-speakers.")
@click.option("--yes", is_flag=True, help="With --assign-speakers: write, not only preview.")
@click.option(
    "--scrub",
    is_flag=True,
    help="Replace e-mails, phones, URL tokens and blocked words in the text, names and url "
    "(kept in persona.toml).",
)
@threads_option
def transcript_add(
    persona: Persona,
    source: str,
    benchmark: bool,
    fmt: str | None,
    interviewer: str | None,
    target: str | None,
    when: str | None,
    url: str,
    assign_speakers: bool,
    generator: str | None,
    yes: bool,
    scrub: bool,
) -> None:
    """Import an interview into transcripts/ (or benchmark/ with --benchmark).

    SOURCE is a file or an http(s) URL: WebVTT or SRT captions (speakers from <v Name> tags
    or NAME: labels), an interview page (bold questions, Q:/A: or Name: paragraphs), plain
    text of `Name:` or `Q:`/`A:` paragraphs, a Podcasting 2.0 transcript (JSON segments,
    HTML with <cite> speakers, SRT, VTT), or a transcript JSON to validate and copy.
    With --assign-speakers, a model labels unlabelled text or captions: it previews, and
    writes with --yes.
    Example: raft transcript:add sample talk.vtt --date 2024-01-05
    """
    from raft.config import display_name, persona_llm, record_target, update_config
    from raft.interviews.read import read_interview
    from raft.scrub import chosen_scrubber, describe_counts
    from raft.transcripts import save_transcript, transcript_path

    persona.require()
    labeller = persona_llm(persona, "generator", generator) if assign_speakers else None
    interview = read_interview(
        source,
        target=target or display_name(persona),
        fmt=fmt,
        interviewer=interviewer,
        when=when,
        url=url,
        labeller=labeller,
    )
    preview = labeller is not None and not yes
    scrubber = chosen_scrubber(persona, scrub)
    if scrubber is not None:
        interview = interview.rewritten(scrubber.scrub)
        interview = interview.noted(scrubbed=dict(scrubber.counts))
        click.echo(f"scrubbed {persona.name}: {describe_counts(scrubber.counts)} replaced")
    asked, answered = interview.words()
    people = ", ".join(f"{name} ({side})" for name, side, _ in interview.speakers)
    # Every speaker's words, so a line given to the wrong speaker shows.
    said = ", ".join(f"{name} {words:,}" for name, _, words in interview.speakers)
    found = (
        f"{_counted(len(interview.exchanges), 'exchange')} (questions {asked:,} words, answers "
        f"{answered:,} words), {interview.date}, {interview.url or 'no url'}, speakers {people}"
    )
    if interview.left_out is not None:  # a page: what of its article is not the interview
        from raft.interviews.page import describe_left_out

        click.echo(f"transcript:add {persona.name}: {describe_left_out(interview.left_out)}")
    if labeller is not None:
        calls = _counted(labeller.calls, "model call")
        click.echo(f"speakers labelled by {labeller.model_id}: {calls}")
        if preview:
            for number, (question, answer) in enumerate(interview.exchanges[:3], 1):
                click.echo(f"  {number}. Q: {_abbreviated(question)}")
                click.echo(f"     A: {_abbreviated(answer)}")
            out = transcript_path(persona, interview, benchmark)
            if out.exists():
                raise UsageError(f"{out} already exists; remove it first to replace it")
            click.echo(f"words by speaker: {said}")
            click.echo(f"transcript:add {persona.name}: preview: {found}")
            click.echo(f"nothing written; re-run with --yes to write {out} (labels are cached)")
            return
    out = save_transcript(persona, interview, benchmark)
    if scrub:  # as with fetch, kept for every later import once it has written something
        update_config(persona, scrub=True)
    record_target(persona)
    click.echo(f"words by speaker: {said}")
    click.echo(f"transcript:add {persona.name}: {found} -> {out}")


def _counted(n: int, thing: str) -> str:
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def _abbreviated(text: str, words: int = 16) -> str:
    split = text.split()
    return " ".join(split[:words]) + (" …" if len(split) > words else "")


@cli.command("ft:gen")
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
@click.option("--context", is_flag=True, help="Add the previous answer to retrieval queries.")
@click.option(
    "--memories",
    "memory_style",
    type=click.Choice(MEMORY_STYLES),
    help=f"How a memory is written: the chunk's sentences closest to the question, verbatim "
    f"(extractive), or an LLM's first-person recollection (rephrased). [{DEFAULT_MEMORY_STYLE}]",
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
@click.option("--generator", metavar="SPEC", help="LLM for rephrase and judge.")
@click.option("--embedder", metavar="SPEC", help="Must match the one that built the store.")
@threads_option
def ft_gen(
    persona: Persona,
    oai: bool,
    generic: bool,
    k: int,
    max_tokens: int,
    answer_reserve: int,
    distractors: float,
    context: bool,
    memory_style: str | None,
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

    if oai and generic:
        raise UsageError("--oai and --generic exclude each other")
    if no_memories and memory_style:
        raise UsageError("--memories and --no-memories exclude each other")
    if not 0 <= distractors <= 1 or not 0 <= valid_fraction < 1 or k < 1 or max_tokens < 256:
        raise UsageError(
            "need 0 <= --distractors <= 1, 0 <= --valid-fraction < 1, -k >= 1, --max-tokens >= 256"
        )
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
    )
    only = "oai" if oai else "generic" if generic else None
    with progress_bar() as progress:
        stats, calls = run_ft_gen(persona.require(), settings, only, generator, embedder, progress)
    print_ft_gen_summary(persona, stats, calls)


def print_ft_gen_summary(persona: Persona, stats: dict, calls: int) -> None:
    m = stats["memories"]
    dropped = stats.get("review", {}).get("samples_dropped", 0)
    click.echo(
        f"ft:gen {persona.name}: {stats['samples']} samples ({stats['real_samples']} real, "
        f"{stats['synthetic_samples']} synthetic) from {stats['interviews']} interviews; "
        f"memories {m['retrieved']} retrieved, {m['useful_by_question']} useful by question, "
        f"{m['consistent_with_answer']} consistent with the answer, {m['kept']} kept; "
        f"{stats['samples_truncated']} samples truncated; {calls} model calls"
        + (f"; {dropped} samples dropped in review" if dropped else "")
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


@cli.command("ft:run")
@persona_argument
@click.option(
    "--backend", type=click.Choice(["local", "openai"]), default="local", show_default=True
)
@click.option("--base-model", metavar="M", help="Local: HF folder or hub id; OpenAI: model name.")
@click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True)
@click.option(
    "--dataset",
    type=click.Choice(DATASETS),
    default="raft",
    show_default=True,
    help="Train on the RAFT samples (finetune/) or the same samples without memories "
    "(finetune/plain/, from `ft:gen --no-memories`).",
)
@click.option("--epochs", type=int, help="Passes over the training file.")
@click.option("--max-steps", type=int, help="Local: stop after this many optimizer steps.")
@click.option("--lr", type=float, help="Local: learning rate (default 2e-4 SFT, 5e-5 DPO).")
@click.option("--lr-multiplier", type=float, help="OpenAI: learning-rate multiplier.")
@click.option(
    "--batch-size",
    type=int,
    help="Samples per optimizer step (local: padded batches instead of --batch-tokens).",
)
@click.option(
    "--batch-tokens",
    type=int,
    metavar="N",
    help="Local SFT: tokens per device and step, samples packed whole "
    "[CPU: --max-length; GPU: ~8192 as memory allows].",
)
@click.option(
    "--checkpointing",
    type=click.Choice(["auto", "on", "off"]),
    help="Local: recompute activations to save memory; auto when they would not fit [auto].",
)
@click.option(
    "--peak-tflops",
    type=float,
    metavar="X",
    help="Local: the device's dense bf16 peak, for the MFU of a GPU not in raft's table.",
)
@click.option("--lora-r", type=int, default=16, show_default=True, help="Local: LoRA rank.")
@click.option("--max-length", type=int, help="Local: tokens per sample [1024 CPU, 4096 GPU].")
@click.option("--save-steps", type=int, default=50, show_default=True, help="Local: checkpoints.")
@click.option("--resume", is_flag=True, help="Local: continue the last unfinished run.")
@click.option("--suffix", help="OpenAI: model name suffix (default: the persona name).")
@threads_option
def ft_run(
    persona: Persona,
    backend: str,
    base_model: str | None,
    method: str,
    dataset: str,
    epochs: int | None,
    max_steps: int | None,
    lr: float | None,
    lr_multiplier: float | None,
    batch_size: int | None,
    batch_tokens: int | None,
    checkpointing: str | None,
    peak_tflops: float | None,
    lora_r: int,
    max_length: int | None,
    save_steps: int,
    resume: bool,
    suffix: str | None,
) -> None:
    """Train the replica on finetune/: a local LoRA, or an OpenAI fine-tuning job.

    Local: LoRA on SmolLM2-135M-Instruct by default; loss on the final answer only.
    --method dpo prefers the author's real answer over the base model's reply, starting
    from the newest SFT adapter. OpenAI: uploads openai.jsonl, starts a job and follows it;
    Ctrl-C detaches, and running the command again re-attaches. Runs land in models/.
    Example: raft ft:run sample --backend local --max-steps 20
    """
    persona.require()
    for name, value in [
        ("--epochs", epochs),
        ("--max-steps", max_steps),
        ("--batch-size", batch_size),
        ("--batch-tokens", batch_tokens),
    ]:
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1")
    if peak_tflops is not None and not peak_tflops > 0:
        raise UsageError("--peak-tflops must be above 0")
    from raft.training import distributed

    if backend == "openai" and distributed.launched():
        distributed.require_everywhere("accelerate launch runs --backend local only")
    if backend == "openai":
        from raft.training.openai_jobs import JobSettings, run_openai_job

        local_only = {
            "--max-steps": max_steps,
            "--lr": lr,
            "--max-length": max_length,
            "--resume": resume or None,
            "--batch-tokens": batch_tokens,
            "--checkpointing": checkpointing,
            "--peak-tflops": peak_tflops,
        }
        given = [name for name, value in local_only.items() if value is not None]
        if given or method != "sft":
            raise UsageError(
                f"{', '.join(given) or '--method dpo'} applies to --backend local only"
            )
        if not base_model:
            raise UsageError("--backend openai needs --base-model (e.g. gpt-4.1-mini-2025-04-14)")
        settings = JobSettings(
            base_model=base_model,
            epochs=epochs,
            lr_multiplier=lr_multiplier,
            batch_size=batch_size,
            suffix=suffix or persona.name,
            dataset=dataset,
        )
        record = run_openai_job(persona, settings)
    else:
        from raft.training.lora import LoraSettings, run_lora

        if lr_multiplier is not None or suffix is not None:
            raise UsageError("--lr-multiplier and --suffix apply to --backend openai only")
        settings = LoraSettings(
            method=method,
            base_model=base_model,
            epochs=epochs,
            max_steps=max_steps,
            lr=lr,
            batch_size=batch_size,
            batch_tokens=batch_tokens,
            checkpointing=checkpointing or "auto",
            peak_tflops=peak_tflops,
            lora_r=lora_r,
            resume=resume,
            max_length=max_length,
            save_steps=save_steps,
            dataset=dataset,
        )
        record = run_lora(persona, settings)
        distributed.leave()
    if distributed.is_main():  # under accelerate launch, one line for all processes
        click.echo(f"{record.id}: {record.status} -> {record.model}")


@cli.command()
@persona_argument
@click.option("--run", "run_id", metavar="RUN", help="Registry id (default: newest local run).")
@click.option("--gguf", is_flag=True, required=True, help="Write a GGUF LoRA adapter.")
def export(persona: Persona, run_id: str | None, gguf: bool) -> None:
    """Export a trained LoRA adapter as a GGUF adapter, with an Ollama Modelfile.

    The adapter loads in llama.cpp beside its base model (llama-cpp-python `lora_path`,
    `llama-cli --lora`), and `ollama create NAME -f Modelfile` imports both.
    Example: raft export sample --gguf
    """
    from raft.training.export import export_gguf

    record = export_gguf(persona.require(), run_id)
    for kind, path in record.exports.items():
        click.echo(f"{kind}: {persona.root / path}")


@cli.command()
@persona_argument
def models(persona: Persona) -> None:
    """List the persona's trained models: local adapters and OpenAI fine-tunes.

    Example: raft models sample
    """
    from raft.training.registry import print_records

    print_records(persona.require())


@cli.command("bench:setup")
@persona_argument
@click.option("--oai", is_flag=True, help="Only rebuild the OpenAI prompt files from items.jsonl.")
@click.option("--generic", is_flag=True, help="Only write the generic bench/items.jsonl.")
@click.option("--generator", metavar="SPEC", help="Override the training data's generator (warns).")
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


def replica_options(command):
    """Options shared by chat and serve: which model, and how the replica remembers."""
    options = [
        click.option("--model", metavar="ID_OR_SPEC", help="Registry id or backend spec."),
        click.option(
            "--generator",
            metavar="SPEC",
            help="Override the generator the model's training data was made with (warns).",
        ),
        click.option("--no-memories", is_flag=True, help="Answer without recalled writing."),
        click.option("--before", metavar="DATE", help="Talk to the author as of this date."),
        click.option("--interviewer", default="the interviewer", show_default=True),
        click.option("--temperature", type=float, default=0.7, show_default=True),
        click.option("--max-tokens", type=int, default=512, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        threads_option,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def replica_settings(options: dict):
    from raft.replica import ReplicaSettings

    return ReplicaSettings(
        memories=not options["no_memories"],
        before=_iso_date(options["before"]),
        interviewer=options["interviewer"],
        reply_tokens=options["max_tokens"],
        temperature=options["temperature"],
        seed=options["seed"],
    )


def open_persona_replica(persona: Persona, options: dict):
    from raft.backends.spec import redact
    from raft.replica import open_replica

    settings = replica_settings(options)
    replica = open_replica(persona.require(), options["model"], settings, options["generator"])
    replica.label = redact(replica.label)  # a --model URL's credentials stay off the screen
    return replica


@cli.command()
@persona_argument
@replica_options
@click.option("--once", metavar="QUESTION", help="Ask one question, print the reply, exit.")
def chat(persona: Persona, once: str | None, **options) -> None:
    """Talk to the replica in the terminal, with the same retrieval as training.

    Each question recalls the author's writing (all of it, or only before --before), keeps
    the memories judged useful from the question alone, and puts them in the memory slot
    the training samples used. Replies stream to stdout; memories go to stderr. The model:
    a registry id (raft models NAME), a backend spec, or by default the newest trained model.
    Example: raft chat sample --once "What is the forty-year test?"
    """
    from raft.chat import run_chat

    run_chat(open_persona_replica(persona, options), once)


@cli.command()
@persona_argument
@replica_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--api-key",
    envvar="RAFT_SERVE_API_KEY",
    help="Required of every API request when set (pages ask for it; rater links need none).",
)
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=1_000_000,
    show_default=True,
    metavar="BYTES",
    help="Largest request body; larger ones get 413.",
)
@click.option(
    "--queue",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Completions running or waiting at once; more get 503 with Retry-After.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name to serve besides loopback and --host (repeatable; '*': any).",
)
@click.option(
    "--raters",
    type=click.IntRange(min=1),
    metavar="N",
    help="Print blind-test links for N raters (kept ones stay valid; new ones are added).",
)
@click.option("--blind-run", metavar="RUN", help="The RATF run of the blind test [latest].")
def serve(
    persona: Persona,
    host: str,
    port: int,
    api_key: str | None,
    max_body: int,
    queue: int,
    allow_hosts: tuple[str, ...],
    raters: int | None,
    blind_run: str | None,
    **options,
) -> None:
    """Serve the replica over an OpenAI-compatible HTTP API, with web pages.

    POST /v1/chat/completions (also with stream: true) and GET /v1/models; every reply
    carries the memories it used in a `memories` field. A request's `model` picks the
    default replica (named NAME: --model's choice), `base`, or any trained model by id.
    Pages at /: chat, compare replicas, RATF reports, the blind test (/blind) of the latest
    `ratf run` (or --blind-run), and dataset review (/samples). Binds to 127.0.0.1;
    another host needs an API key (--api-key or RAFT_SERVE_API_KEY), which the pages ask
    for and blind-test links do not need. Only JSON bodies up to --max-body, at most 200
    messages of 100,000 characters, and Host names 127.0.0.1, localhost, [::1], --host and
    --allow-host are served.
    Example: raft serve sample --port 8000 --raters 3
    """
    from raft.replica import Replicas
    from raft.serve import serve as run_server
    from raft.web.app import Pages
    from raft.web.blind import open_blind, rater_links

    replica = open_persona_replica(persona, options)
    replicas = Replicas(
        replica, persona.name, persona, replica_settings(options), options["generator"]
    )
    blind = open_blind(persona, blind_run, raters)
    if raters:
        base = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        click.echo(rater_links(blind, base, raters))
    run_server(
        replicas,
        host,
        port,
        api_key,
        max_body=max_body,
        queue=queue,
        allow_hosts=allow_hosts,
        pages=Pages(persona, blind),
    )


@cli.command()
@persona_argument
def check(persona: Persona) -> None:
    """Check a persona for leakage and integrity; non-zero exit on any failure.

    Held-out interviews apart from training ones; no held-out question or answer in the
    corpus, the store or finetune/; every memory in a training sample older than its
    interview; every answer the author's own words; every system prompt the template's;
    no e-mail address, phone number, personal URL token or blocked word (persona.toml's
    blocked_words) in any file under finetune/.
    Example: raft check sample
    """
    from raft.check import run_checks

    results = run_checks(persona.require())
    for result in results:
        mark = "PASS" if result.passed else "FAIL"
        click.echo(f"{mark}  {result.name}" + (f": {result.detail}" if result.detail else ""))
    failed = sum(not r.passed for r in results)
    if failed:
        raise RaftError(f"{failed} of {len(results)} checks failed")


# One writer per persona (see raft/lock.py): what each command holds on data/NAME/.lock
# while it runs. info, search, models and check only read, and take no lock.
hold_persona_locks(
    cli,
    exclusive=[
        "fetch",
        "chunk",
        "embed",
        "transcript:add",
        "ft:gen",
        "ft:run",
        "export",
        "bench:setup",
    ],
    shared=["chat", "serve"],
    creates=["fetch"],
)


def main() -> None:
    sys.exit(run(cli, "raft"))
