"""The transcripts stage: import an interview, for training or held out for RATF."""

from __future__ import annotations

import click

from raft.commands.options import backend_option
from raft.console import persona_argument, threads_option
from raft.errors import UsageError
from raft.paths import Persona


@click.command("transcript:add")
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
@backend_option("generator", "The LLM for --assign-speakers.")
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
    from raft.config import update_config
    from raft.interviews.read import read_interview
    from raft.scrub import chosen_scrubber, describe_counts
    from raft.transcripts import save_transcript, transcript_path
    from raft.workspace import Workspace

    ws = Workspace.open(persona.require(), generator=generator)
    labeller = ws.llm() if assign_speakers else None
    interview = read_interview(
        source,
        target=target or ws.display_name,
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
    ws.record_target()
    click.echo(f"words by speaker: {said}")
    click.echo(f"transcript:add {persona.name}: {found} -> {out}")


def _counted(n: int, thing: str) -> str:
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def _abbreviated(text: str, words: int = 16) -> str:
    split = text.split()
    return " ".join(split[:words]) + (" …" if len(split) > words else "")
