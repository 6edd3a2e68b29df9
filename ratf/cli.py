"""The `ratf` command line: replay held-out interviews to replicas, score, report."""

from __future__ import annotations

import sys

import click

from raft.console import persona_argument, run
from raft.errors import NotBuiltError
from raft.paths import Persona


def not_built(command: str) -> None:
    raise NotBuiltError(f"`ratf {command}` is not built yet (the RATF benchmark, issue #8)")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="raft-toolkit", prog_name="ratf")
def cli(debug: bool) -> None:
    """RATF: measure how close a replica comes to the real person.

    Run `raft bench:setup NAME` first; then `ratf run`, `ratf score`, `ratf report`.
    """


@cli.command("run")
@persona_argument
@click.option("--replica", "replicas", multiple=True, metavar="LABEL=SPEC[,memories=on|off]")
def run_(persona: Persona, replicas: tuple[str, ...]) -> None:
    """Generate each replica's reply to every benchmark item.

    Example: ratf run sample --replica base=local,memories=on
    """
    not_built("run")


@cli.command()
@persona_argument
@click.option("--run", "run_id", metavar="RUN", help="Which run to score (default: latest).")
@click.option("--predictions", type=click.Path(dir_okay=False), help='JSONL of {"id", "reply"}.')
def score(persona: Persona, run_id: str | None, predictions: str | None) -> None:
    """Score replies against the real answers, with bootstrap confidence intervals.

    Example: ratf score sample --predictions replies.jsonl
    """
    not_built("score")


@cli.command()
@persona_argument
def report(persona: Persona) -> None:
    """Write the Markdown report, JSON summary and plots.

    Example: ratf report sample
    """
    not_built("report")


def main() -> None:
    sys.exit(run(cli, "ratf"))
