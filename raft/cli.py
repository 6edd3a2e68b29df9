"""The `raft` command line: thin commands that parse, call one function, and report."""

from __future__ import annotations

import sys

import click

from raft.console import persona_argument, run
from raft.errors import NotBuiltError
from raft.paths import Persona


def not_built(command: str, issue: int, what: str) -> None:
    raise NotBuiltError(f"`raft {command}` is not built yet ({what}, issue #{issue})")


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
def fetch(persona: Persona, sources: tuple[str, ...]) -> None:
    """Gather the author's writing into corpus.jsonl.

    Without --from, refreshes the sources recorded in persona.toml, or else
    https://NAME.substack.com. Example: raft fetch sample --from data/sample/essays
    """
    not_built("fetch", 3, "corpus stages")


@cli.command()
@persona_argument
def chunk(persona: Persona) -> None:
    """Split corpus.jsonl into token-bounded chunks (chunks.jsonl), losing no text.

    Example: raft chunk sample
    """
    not_built("chunk", 3, "corpus stages")


@cli.command()
@persona_argument
def embed(persona: Persona) -> None:
    """Embed new or changed chunks into the persona's ChromaDB collection.

    Example: raft embed sample
    """
    not_built("embed", 3, "corpus stages")


@cli.command("transcript:add")
@persona_argument
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--benchmark", is_flag=True, help="Hold the interview out for RATF.")
def transcript_add(persona: Persona, file: str, benchmark: bool) -> None:
    """Import a plain-text interview (`Name: text` paragraphs) as a transcript.

    Example: raft transcript:add sample interview.txt --interviewer "Jo Park" --date 2024-01-05
    """
    not_built("transcript:add", 4, "transcripts and the RAFT dataset")


@cli.command("ft:gen")
@persona_argument
@click.option("--oai", is_flag=True, help="Only rebuild the format files from raft.jsonl.")
@click.option("--generic", is_flag=True, help="Only write the generic raft.jsonl.")
def ft_gen(persona: Persona, oai: bool, generic: bool) -> None:
    """Build fine-tuning samples: retrieve, rephrase and judge memories for every exchange.

    Example: raft ft:gen sample
    """
    not_built("ft:gen", 4, "the RAFT dataset")


@cli.command("ft:run")
@persona_argument
@click.option("--backend", type=click.Choice(["local", "openai"]), default="local")
@click.option("--base-model", metavar="M", help="Base model to fine-tune.")
def ft_run(persona: Persona, backend: str, base_model: str | None) -> None:
    """Train the replica: a local LoRA, or an OpenAI fine-tuning job.

    Example: raft ft:run sample --backend local
    """
    not_built("ft:run", 6, "training")


@cli.command()
@persona_argument
def export(persona: Persona) -> None:
    """Export a trained LoRA adapter as GGUF, with an Ollama Modelfile.

    Example: raft export sample --gguf
    """
    not_built("export", 6, "training and export")


@cli.command("bench:setup")
@persona_argument
@click.option("--oai", is_flag=True, help="Also write prompts in OpenAI chat format.")
@click.option("--generic", is_flag=True, help="Only write the generic benchmark items.")
def bench_setup(persona: Persona, oai: bool, generic: bool) -> None:
    """Build RATF benchmark items from the held-out interviews in benchmark/.

    Example: raft bench:setup sample
    """
    not_built("bench:setup", 8, "the RATF benchmark")


@cli.command()
@persona_argument
def chat(persona: Persona) -> None:
    """Talk to the replica in the terminal, with the same retrieval as training.

    Example: raft chat sample --once "What is the forty-year test?"
    """
    not_built("chat", 7, "chat and serve")


@cli.command()
@persona_argument
def serve(persona: Persona) -> None:
    """Serve the replica over an OpenAI-compatible HTTP API.

    Example: raft serve sample --port 8000
    """
    not_built("serve", 7, "chat and serve")


@cli.command()
@persona_argument
def check(persona: Persona) -> None:
    """Check a persona for leakage and integrity; non-zero exit on any failure.

    Example: raft check sample
    """
    not_built("check", 10, "robustness checks")


def main() -> None:
    sys.exit(run(cli, "raft"))
