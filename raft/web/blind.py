"""The blind test: "which of these answers is the author's?", asked of people.

Built from a RATF run: each benchmark item with replies shows its question, the real
conversation before it, and the author's real answer among one reply of each system of
the run, in an order fixed per rater and item (a reload shows the same page). A rater is
named by a token in their link; `ratf/human/raters.json` keeps the tokens, so links outlive
a restart. Each judgement is one line appended to `ratf/human/RUN.jsonl` (ratf.human).
Which answer is whose never reaches the page: it sees opaque choice numbers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raft.errors import UsageError
from raft.files import write_json
from raft.paths import Persona
from ratf.human import AUTHOR, Judgement, append_judgement, human_path, read_judgements
from ratf.items import load_items
from ratf.runner import latest_run, read_replies

RATERS_FILE = "raters.json"


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
        return [Rater(r["name"], r["token"]) for r in json.loads(path.read_text())["raters"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a raters file ({exc}); fix or move it") from None


def add_raters(persona: Persona, count: int) -> list[Rater]:
    """At least `count` raters, keeping those there are (their links stay valid)."""
    raters = load_raters(persona)
    for n in range(len(raters), count):
        raters.append(Rater(f"rater-{n + 1}", secrets.token_urlsafe(16)))
    write_json(raters_path(persona), {"raters": [vars(r) for r in raters]})
    return raters


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
        self.lock = threading.Lock()  # one judgement at a time checks and appends

    def rater(self, token: Any) -> Rater:
        """The rater a token names; raters added while the server runs count too."""
        for rater in load_raters(self.persona):
            if isinstance(token, str) and hmac.compare_digest(rater.token, token):
                return rater
        raise PermissionError("this link is not a rater's: ask for your link again")

    def order(self, rater: Rater, item: BlindItem) -> list[str]:
        seed = hashlib.sha256(f"{rater.token}\0{item.id}".encode()).digest()
        labels = sorted(item.answers)
        random.Random(seed).shuffle(labels)
        return labels

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
        with self.lock:
            if any(j.item == item.id for j in self.judged(rater)):
                raise FileExistsError("you have judged this question already")
            at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            append_judgement(self.path, Judgement(rater.name, item.id, shown, shown[choice], at))
        return self.state(token)


def open_blind(persona: Persona, run: str | None, raters: int | None) -> Blind | None:
    """The blind test `raft serve` offers: of the named run, else the latest. Without a
    run there is none, which is an error only where one was asked for (a run, raters)."""
    asked = bool(run or raters)
    try:
        blind = Blind(persona, run)
        if not blind.items:
            raise UsageError(
                f"run {blind.run} has no replies to the items in {persona.bench}: "
                f"run `ratf run {persona.name}` again"
            )
    except UsageError:
        if asked:
            raise
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
