"""The `raft` command line: thin commands that parse, call one function, and report.

The commands live in raft/commands/, a module per stage of the pipeline; this file is
their table of contents."""

from __future__ import annotations

import sys

import click

from raft.commands import bench, corpus, dataset, persona, talk, training, transcripts
from raft.console import run
from raft.lock import hold_persona_locks


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="raft-toolkit", prog_name="raft")
def cli(debug: bool) -> None:
    """RAFT: build a conversational replica of a writer from their writing and interviews.

    Every command takes the persona NAME first; its files live in $RAFT_DATA_DIR/NAME
    (default ./data/NAME). Pipeline: fetch -> chunk -> embed -> ft:gen -> ft:run -> chat.
    """


for command in [
    persona.info,
    corpus.fetch,
    corpus.chunk,
    corpus.embed,
    corpus.embed_train,
    corpus.search,
    transcripts.transcript_add,
    dataset.ft_gen,
    training.ft_run,
    training.export,
    training.models,
    talk.chat,
    talk.serve,
    bench.bench_setup,
    persona.check,
]:
    cli.add_command(command)

# One writer per persona (see raft/lock.py): what each command holds on data/NAME/.lock
# while it runs. info, search, models and check only read, and take no lock.
hold_persona_locks(
    cli,
    exclusive=[
        "fetch",
        "chunk",
        "embed",
        "embed:train",
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
