"""The `ratf` command line: replay held-out interviews to replicas, score, report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from raft.console import persona_argument, progress_bar, run, threads_option
from raft.errors import UsageError
from raft.lock import hold_persona_locks
from raft.paths import Persona


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show the traceback of an error.")
@click.version_option(package_name="raft-toolkit", prog_name="ratf")
def cli(debug: bool) -> None:
    """RATF: measure how close a replica comes to the real person.

    Run `raft bench:setup NAME` first; then `ratf run`, `ratf score`, `ratf report`.
    """


@cli.command("run")
@persona_argument
@click.option(
    "--replica",
    "replicas",
    multiple=True,
    metavar="LABEL=SPEC[,memories=on|off]",
    help="A model (registry id or backend spec) under a label (repeatable).",
)
@click.option("--max-tokens", default=256, show_default=True, help="Longest reply.")
@threads_option
def run_(persona: Persona, replicas: tuple[str, ...], max_tokens: int) -> None:
    """Generate each replica's reply to every benchmark item (greedy, cached).

    Without --replica: the six-way ablation, each without and with memories: the base
    model (base, base+mem), the newest LoRA on the plain dataset (plain, plain+mem) and on
    the RAFT dataset (raft-nomem, raft); a model not trained yet is skipped.
    Example: ratf run sample --replica base=local,memories=off --replica base+mem=local
    """
    from raft.backends.spec import redact
    from ratf.items import load_items
    from ratf.runner import RunSettings, default_replicas, parse_replica, run_replicas

    load_items(persona.require())  # no items: say so before choosing replicas
    specs = [parse_replica(text) for text in replicas] or default_replicas(persona)
    with progress_bar() as progress:
        folder = run_replicas(
            persona.require(), specs, RunSettings(max_tokens=max_tokens), progress
        )
    labels = ", ".join(
        f"{s.label}={redact(s.model)}{'' if s.memories else ' (no memories)'}" for s in specs
    )
    click.echo(f"{folder.name}: replies of {labels} in {folder}")


@cli.command()
@persona_argument
@click.option("--run", "run_id", metavar="RUN", help="Which run to score (default: latest).")
@click.option(
    "--predictions",
    type=click.Path(dir_okay=False, path_type=Path),
    help='JSONL of {"id", "reply"}.',
)
@click.option(
    "--judge", metavar="SPEC", help="Also judge with this LLM (pairwise, discrimination)."
)
@click.option(
    "--no-likelihood",
    is_flag=True,
    help="Skip answer likelihood (bits/byte of the real answer under each local replica).",
)
@threads_option
def score(
    persona: Persona,
    run_id: str | None,
    predictions: Path | None,
    judge: str | None,
    no_likelihood: bool,
) -> None:
    """Score replies against the real answers, with bootstrap confidence intervals.

    Scores the latest `ratf run`, or --predictions from any system (one {"id", "reply"}
    line per benchmark item), beside three controls: the real answer (oracle), another
    answer of the author's (shuffled), the interviewer's next question (other voice).
    Each local replica also gets the likelihood of the real answer after its prompt, in
    bits per byte (lower is closer), against the shuffled answer after the same prompt;
    remote replicas and --predictions are n/a. The run's human blind test, where raters
    have judged it (ratf/human/RUN.jsonl), is summarized beside them.
    Example: ratf score sample --predictions replies.jsonl
    """
    from raft.files import write_json, write_jsonl
    from ratf.items import load_items
    from ratf.runner import latest_run, new_run_folder, read_replies
    from ratf.scoring import read_predictions, score_replies
    from ratf.terminal import print_table

    persona.require()
    if predictions and run_id:
        raise UsageError("--run and --predictions exclude each other")
    if predictions:
        replies = {"predictions": read_predictions(predictions, load_items(persona))}
        replicas = {"predictions": {"spec": str(predictions), "memories": None}}
        folder = new_run_folder(persona, "-predictions")
        write_jsonl(
            folder / "replies.jsonl",
            [
                {"id": i, "system": "predictions", "reply": r}
                for i, r in replies["predictions"].items()
            ],
        )
        write_json(folder / "run.json", {"run": folder.name, "replicas": replicas})
    else:
        folder = latest_run(persona, run_id)
        replies = read_replies(folder)
        replicas = json.loads((folder / "run.json").read_text(encoding="utf-8"))["replicas"]
    with progress_bar() as progress:
        summary = score_replies(
            persona, folder, replies, replicas, judge, progress, likelihood=not no_likelihood
        )
    print_table(summary)
    click.echo(f"scores: {folder / 'summary.json'}")


@cli.command()
@persona_argument
@click.option("--run", "run_id", metavar="RUN", help="Which scored run (default: latest).")
def report(persona: Persona, run_id: str | None) -> None:
    """Write the Markdown report and PNG plots of a scored run, and print its table.

    Human blind-test judgements are read afresh, with those made since `ratf score`.
    Example: ratf report sample
    """
    from ratf.report import write_report
    from ratf.runner import latest_run
    from ratf.summary import current_summary
    from ratf.terminal import print_table

    folder = latest_run(persona.require(), run_id, marker="summary.json")
    summary = current_summary(folder)
    paths = write_report(folder, summary)
    print_table(summary)
    click.echo(f"report: {paths.get('report', folder / 'report.md')}")


# One writer per persona (see raft/lock.py): every ratf command writes under ratf/.
hold_persona_locks(cli, exclusive=["run", "score", "report"])


def main() -> None:
    sys.exit(run(cli, "ratf"))
