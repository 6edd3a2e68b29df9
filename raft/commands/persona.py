"""A persona as a whole: what its folder holds (info) and whether it leaks (check)."""

from __future__ import annotations

import click

from raft.console import persona_argument
from raft.errors import RaftError
from raft.paths import Persona


@click.command()
@persona_argument
def info(persona: Persona) -> None:
    """Show a persona's files, chosen backends and cache.

    Example: raft info sample
    """
    from raft.status import print_status

    print_status(persona.require())


@click.command()
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
