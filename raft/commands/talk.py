"""Talking to the replica: in the terminal (chat), or over HTTP with web pages (serve)."""

from __future__ import annotations

import click

from raft.commands.options import backend_option, iso_date
from raft.console import persona_argument, threads_option
from raft.paths import Persona


def replica_options(command):
    """Options shared by chat and serve: which model, and how the replica remembers."""
    options = [
        click.option("--model", metavar="ID_OR_SPEC", help="Registry id or backend spec."),
        backend_option(
            "generator", "Override the generator the model's training data was made with (warns)."
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
        before=iso_date(options["before"]),
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


@click.command()
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


@click.command()
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
