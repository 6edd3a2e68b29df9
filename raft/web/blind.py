"""The blind test: "which of these answers is the author's?", asked of people.

Built from a RATF run: each benchmark item with replies shows its question, the real
conversation before it, and the author's real answer among one reply of each system of
the run, in an order fixed per rater and item (a reload shows the same page). A rater is
named by a token in their link; `ratf/human/raters.json` keeps the tokens, so links outlive
a restart. The order is keyed by `ratf/human/secret`, 32 random bytes made once and never
served, so that a rater cannot work it out from their token and the item ids. Each
judgement is one line appended to `ratf/human/RUN.jsonl` (ratf.human), with the order it
was shown in, so scoring needs no secret. Which answer is whose never reaches the page: it
sees opaque choice numbers.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raft.console import warn
from raft.errors import RaftError, UsageError
from raft.files import locked, write_failed, write_json
from raft.paths import Persona
from ratf.human import AUTHOR, Judgement, append_judgement, human_path, read_judgements
from ratf.items import load_items
from ratf.runner import latest_run, read_replies

RATERS_FILE = "raters.json"
SECRET_FILE = "secret"
SECRET_BYTES = 32


@dataclass(frozen=True)
class Rater:
    name: str
    token: str


@dataclass(frozen=True)
class BlindItem:
    id: str
    question: str
    history: list[tuple[str, str]]  # the real earlier exchanges of the interview
    answers: dict[str, str]  # label (a system, or AUTHOR) -> text


def raters_path(persona: Persona) -> Path:
    return persona.ratf / "human" / RATERS_FILE


def load_raters(persona: Persona) -> list[Rater]:
    path = raters_path(persona)
    if not path.is_file():
        return []
    try:
        raters = [Rater(r["name"], r["token"]) for r in json.loads(path.read_text())["raters"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a raters file ({exc}); fix or move it") from None
    if not all(isinstance(r.token, str) and r.token.isascii() for r in raters):
        raise UsageError(f"{path}: not a raters file (a token is not ASCII text); fix or move it")
    return raters


def add_raters(persona: Persona, count: int) -> list[Rater]:
    """At least `count` raters, keeping those there are (their links stay valid).

    Locked, so that servers started at once each add to what the other wrote."""
    path = raters_path(persona)
    with locked(path):
        raters = load_raters(persona)
        if len(raters) < count:
            for n in range(len(raters), count):
                raters.append(Rater(f"rater-{n + 1}", secrets.token_urlsafe(16)))
            # The tokens are the raters' links: readable by the server's owner only.
            write_json(path, {"raters": [vars(r) for r in raters]}, private=True)
    return raters


def blind_secret(persona: Persona) -> bytes:
    """The key of the raters' orders, `ratf/human/secret`: made once, mode 0600, and kept,
    so that orders outlive a restart."""
    path = persona.ratf / "human" / SECRET_FILE
    try:
        return read_secret(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{SECRET_FILE}.", dir=path.parent)  # mode 0600
        try:
            os.write(fd, secrets.token_bytes(SECRET_BYTES))
            os.fsync(fd)
            os.link(tmp, path)  # never replaces one a server started at once has made
        except FileExistsError:
            pass
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise write_failed(path, exc) from exc
    return read_secret(path)


def read_secret(path: Path) -> bytes:
    """The secret in `path`; FileNotFoundError without one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RaftError(f"cannot read {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        secret = handle.read(SECRET_BYTES + 1)
    if len(secret) != SECRET_BYTES:
        raise RaftError(
            f"{path}: not a blind-test secret ({SECRET_BYTES} bytes); move it away to make a "
            "new one (the raters' answers will then be shown in new orders)"
        )
    return secret


def blind_items(persona: Persona, run: Path) -> list[BlindItem]:
    """The run's items that have at least one reply, in interview order."""
    replies = read_replies(run)
    items = []
    for item in load_items(persona):
        answers = {system: by_id[item.id] for system, by_id in replies.items() if item.id in by_id}
        if answers:
            history = [(h.question, h.answer) for h in item.history]
            answers[AUTHOR] = item.answer
            items.append(BlindItem(item.id, item.question, history, answers))
    return items


class Blind:
    """The blind test of one run, as the web page asks it."""

    def __init__(self, persona: Persona, run: str | None = None):
        self.persona = persona
        folder = latest_run(persona, run)
        self.run = folder.name
        self.path = human_path(persona, self.run)
        self.items = blind_items(persona, folder)
        self.by_id = {item.id: item for item in self.items}
        self.secret = blind_secret(persona)

    def rater(self, token: Any) -> Rater:
        """The rater a token names; raters added while the server runs count too."""
        if isinstance(token, str) and token.isascii():  # tokens are; compare_digest needs it
            for rater in load_raters(self.persona):
                if hmac.compare_digest(rater.token, token):
                    return rater
        raise PermissionError("this link is not a rater's: ask for your link again")

    def order(self, rater: Rater, item: BlindItem) -> list[str]:
        """The labels in the order the rater is shown the item's answers.

        Each label is placed by a keyed hash of (rater, item, label): without the secret the
        order is a uniformly random permutation, whatever the labels are named."""

        def position(label: str) -> bytes:
            message = "\0".join((rater.token, item.id, label)).encode("utf-8", "surrogatepass")
            return hmac.digest(self.secret, message, "sha256")

        return sorted(item.answers, key=position)

    def judged(self, rater: Rater) -> list[Judgement]:
        return [j for j in read_judgements(self.path) if j.rater == rater.name]

    def state(self, token: Any) -> dict[str, Any]:
        """What the rater's page shows: progress, then the next item or their result."""
        rater = self.rater(token)
        judged = {j.item: j for j in self.judged(rater) if j.item in self.by_id}
        pending = [item for item in self.items if item.id not in judged]
        state: dict[str, Any] = {
            "rater": rater.name,
            "run": self.run,
            "total": len(self.items),
            "done": len(judged),
        }
        if pending:
            item = pending[0]
            state["item"] = {
                "id": item.id,
                "question": item.question,
                "history": item.history,
                "choices": [item.answers[label] for label in self.order(rater, item)],
            }
        else:  # told only at the end, so that no answer teaches the next
            state["correct"] = sum(j.correct for j in judged.values())
        return state

    def judge(self, token: Any, item_id: Any, choice: Any) -> dict[str, Any]:
        """Record the rater's pick for an item; ValueError for a bad item or choice,
        FileExistsError for an item the rater already judged."""
        rater = self.rater(token)
        item = self.by_id.get(item_id) if isinstance(item_id, str) else None
        if item is None:
            raise ValueError("no such item in this blind test")
        shown = self.order(rater, item)
        if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(shown):
            raise ValueError(f"`choice` must be an integer from 0 to {len(shown) - 1}")
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        # Checked under the file's lock: two servers of one persona cannot both write it.
        if not append_judgement(
            self.path, Judgement(rater.name, item.id, shown, shown[choice], at)
        ):
            raise FileExistsError("you have judged this question already")
        return self.state(token)


def open_blind(persona: Persona, run: str | None, raters: int | None) -> Blind | None:
    """The blind test `raft serve` offers: of the named run, else the latest. Without a
    run there is none, which is an error only where one was asked for (a run, raters), as is
    a secret that cannot be made (a read-only persona)."""
    asked = bool(run or raters)
    try:
        blind = Blind(persona, run)
        if not blind.items:
            raise UsageError(
                f"run {blind.run} has no replies to the items in {persona.bench}: "
                f"run `ratf run {persona.name}` again"
            )
    except RaftError as exc:
        if asked:
            raise
        if not isinstance(exc, UsageError):  # the secret: unreadable, or cannot be made
            warn(f"no blind test: {exc}")
        return None
    if raters:
        add_raters(persona, raters)
    return blind


def rater_links(blind: Blind, base_url: str, count: int) -> str:
    """One line per rater: their name and the link to their blind test."""
    raters = load_raters(blind.persona)[:count]
    head = (
        f"blind test of run {blind.run} ({len(blind.items)} questions); send each rater their link:"
    )
    return "\n".join([head, *(f"  {r.name}: {base_url}/blind?rater={r.token}" for r in raters)])
