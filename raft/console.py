"""What the CLIs share: a stderr console, progress bars, errors as one line, and the persona
argument and --threads option that every command of `raft` and `ratf` may take."""

from __future__ import annotations

import sys
from typing import TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from raft import distributed
from raft.errors import RaftError
from raft.paths import Persona
from raft.threads import ENV as THREADS_ENV
from raft.threads import parse_threads, use_threads

# Results go to stdout; progress, memories and messages to stderr, so output pipes cleanly.
err = Console(stderr=True)
T = TypeVar("T")


class _Progress(Progress):
    def stop(self) -> None:
        # Failed before any work was done: leave no bar or blank line above the error.
        if not any(task.completed for task in self.tasks):
            self.live.transient = True
        super().stop()


def progress_bar() -> Progress:
    """A progress display on stderr with counts and time left."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    return _Progress(*columns, console=err, transient=False)


class Tally:
    """One line of a progress display, the one interface every stage reports through:
    stages take the CLI's `Progress` (or None, and then counting does nothing)."""

    def __init__(self, progress: Progress | None, description: str, total: int | None = None):
        self.progress = progress
        self.task = progress.add_task(description, total=total) if progress else None

    def advance(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def grow(self, n: int) -> None:
        """More work than announced: `n` more steps."""
        if self.progress is not None:
            total = self.progress.tasks[self.task].total or 0
            self.progress.update(self.task, total=total + n)

    def describe(self, description: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=description)


def warn(message: str) -> None:
    """One warning line on stderr."""
    click.echo(f"raft: warning: {message}", err=True)


def _to_persona(ctx: click.Context, param: click.Parameter, value: str) -> Persona:
    return Persona.named(value)


persona_argument = click.argument("persona", metavar="NAME", callback=_to_persona)


def _use_threads(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    use_threads(parse_threads(value, "--threads") if value is not None else None)


threads_option = click.option(
    "--threads",
    metavar="N",
    callback=_use_threads,
    expose_value=False,
    help=f"CPU threads for local models, llama.cpp and torch [{THREADS_ENV}, else llama.cpp: "
    "the cores other processes leave free, measured; torch: all].",
)


def run(group: click.Group, prog: str, argv: list[str] | None = None) -> int:
    """Run a click group; user errors become `prog: error: ...` and a non-zero status."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        result = group.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Abort:
        err.print(f"{prog}: interrupted", highlight=False)
        return 130
    # Under accelerate launch every process runs the command: the main one says what the
    # user got wrong (the same line, the same data: the others found the same); unexpected
    # failures are reported by whichever process met them.
    except click.ClickException as exc:
        if distributed.is_main():
            exc.show()
        return exc.exit_code
    except RaftError as exc:
        if debug:
            raise
        if distributed.is_main():
            click.echo(f"{prog}: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo(f"{prog}: interrupted", err=True)
        return 130
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"{prog}: error: {where}{exc.strerror or exc}", err=True)
        return 1
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"{prog}: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback)",
            err=True,
        )
        return 1
    return result if isinstance(result, int) else 0


def quiet_libraries() -> None:
    """Our progress bar and summary replace the libraries' own bars, logs and notices.
    Deprecation warnings stay visible (raft calls the current APIs, so one that shows is
    news), except those one library raises about another's call, named here."""
    import warnings

    import datasets
    from transformers.utils import logging

    datasets.disable_progress_bars()
    logging.disable_progress_bar()
    logging.set_verbosity_error()
    # peft 0.21 reads transformers 5's deprecated `is_gradient_checkpointing` when it wraps
    # a model.
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
