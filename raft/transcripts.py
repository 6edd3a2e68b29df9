"""Interview transcripts: load and validate, import plain text, keep training and benchmark apart.

Format (the original tool's): {"participants": {"q": ..., "a": ...}, "date": "YYYY-MM-DD",
"url": ..., "exchanges": [["question", "answer"], ...]}, with an optional "sources": one list
per exchange of the essays its answer draws on (an essay's link, doc id or link slug), which
measures retrieval and the judge (`raft.memory_quality`); older readers ignore it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from raft.console import warn
from raft.dates import is_iso_date
from raft.errors import RaftError, UsageError
from raft.files import write_json
from raft.paths import Persona

MAX_TEXT_CHARS = 200_000  # one question or answer; larger is a broken file, not an interview
INTERVIEW_ANSWER = "you answered: "  # in an interview memory, where the author's words begin


class TranscriptError(RaftError):
    """A transcript that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Interview:
    path: Path
    interviewer: str
    target: str
    date: str
    url: str
    exchanges: tuple[tuple[str, str], ...]
    benchmark: bool = False
    sources: tuple[tuple[str, ...], ...] = ()  # per exchange, when the file gives them

    @property
    def id(self) -> str:
        return self.path.stem


def _fail(path: Path, problem: str) -> TranscriptError:
    return TranscriptError(f"{path}: {problem}")


def load_interview(path: Path, benchmark: bool = False, body: bytes | None = None) -> Interview:
    """Read and validate one transcript file (`body`: its bytes, when already read)."""
    try:
        data = json.loads((path.read_bytes() if body is None else body).decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # json's decoder gives up on arrays nested thousands deep
        raise _fail(path, "not a transcript (JSON nested too deeply)") from None
    if not isinstance(data, dict):
        raise _fail(path, "expected a JSON object with participants, date, url, exchanges")
    people = data.get("participants")
    if not isinstance(people, dict) or not all(
        isinstance(people.get(k), str) and people[k].strip() for k in ("q", "a")
    ):
        raise _fail(path, 'missing "participants": {"q": interviewer, "a": target}')
    when = data.get("date")
    if not is_iso_date(when):
        raise _fail(path, f"bad date {when!r}: use YYYY-MM-DD")
    exchanges = data.get("exchanges")
    if not isinstance(exchanges, list) or not exchanges:
        raise _fail(path, 'missing "exchanges": a list of [question, answer] pairs')
    pairs = []
    for number, pair in enumerate(exchanges, 1):
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)
        ):
            raise _fail(path, f"exchange {number} is not a [question, answer] pair of strings")
        if not all(s.strip() for s in pair):
            raise _fail(path, f"exchange {number} has an empty question or answer")
        if any(len(s) > MAX_TEXT_CHARS for s in pair):
            raise _fail(path, f"exchange {number} is longer than {MAX_TEXT_CHARS:,} characters")
        pairs.append((pair[0].strip(), pair[1].strip()))
    url = data.get("url") or ""
    if not isinstance(url, str):
        raise _fail(path, '"url" must be a string')
    return Interview(
        path=path,
        interviewer=people["q"].strip(),
        target=people["a"].strip(),
        date=str(when),
        url=url.strip(),
        exchanges=tuple(pairs),
        benchmark=benchmark,
        sources=_sources(path, data.get("sources"), len(pairs)),
    )


def check_lengths(name: str, exchanges: list[list[str]]) -> None:
    """Refuse, naming the input `name`, a question or answer longer than MAX_TEXT_CHARS."""
    for number, pair in enumerate(exchanges, 1):
        if max(len(text) for text in pair) > MAX_TEXT_CHARS:
            raise UsageError(
                f"{name}: exchange {number} is longer than {MAX_TEXT_CHARS:,} characters"
            )


def _sources(path: Path, sources: object, exchanges: int) -> tuple[tuple[str, ...], ...]:
    """The optional "sources": one list of essay names (link, doc id or slug) per exchange."""
    if sources is None:
        return ()
    shape = f'"sources" must be a list of {exchanges} lists of essay links, ids or slugs'
    if not isinstance(sources, list) or len(sources) != exchanges:
        got = f"a list of {len(sources)}" if isinstance(sources, list) else type(sources).__name__
        raise _fail(path, f"{shape} (one per exchange), not {got}")
    parsed = []
    for number, names in enumerate(sources, 1):
        if not isinstance(names, list) or not all(
            isinstance(name, str) and name.strip() for name in names
        ):
            raise _fail(path, f"{shape}: the sources of exchange {number} are not such a list")
        parsed.append(tuple(dict.fromkeys(name.strip() for name in names)))
    return tuple(parsed)


def load_interviews(folder: Path, benchmark: bool = False) -> list[Interview]:
    """Every `*.json` in the folder, oldest interview first; one interview in two files is
    refused, since its exchanges would count twice."""
    if not folder.is_dir():
        return []
    interviews = [load_interview(p, benchmark) for p in sorted(folder.glob("*.json"))]
    for number, first in enumerate(interviews):
        for second in interviews[number + 1 :]:
            if reason := _same_interview(second, first):
                raise RaftError(f"{reason}: keep one of the two files")
    return sorted(interviews, key=lambda i: (i.date, i.id))


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())


_WARNED: set[frozenset[Path]] = set()  # pairs already reported by this process


def _same_interview(one: Interview, other: Interview, name: str = "") -> str | None:
    """Why `one` is `other` again (it repeats most of its questions and answers), or None;
    `name` names `one` in that reason (default: its path).

    The content decides: real transcripts carry urls pasted from another interview, so a
    shared url alone only gets a warning."""
    first = name or str(one.path)
    texts = {_norm(t) for pair in one.exchanges for t in pair}
    shared = texts & {_norm(t) for pair in other.exchanges for t in pair}
    same_url = bool(one.url) and one.url == other.url
    if len(shared) * 2 > len(texts):
        if same_url:
            return (
                f"{first} and {other.path} are the same interview (same url) with most "
                "of the same exchanges"
            )
        return f"{first} repeats most of {other.path}"
    if same_url and frozenset((one.path, other.path)) not in _WARNED:
        _WARNED.add(frozenset((one.path, other.path)))
        warn(
            f"{one.path} and {other.path} share the url {one.url} but not their exchanges; "
            "treated as different interviews"
        )
    return None


def check_held_out(training: list[Interview], benchmark: list[Interview]) -> None:
    """The same interview may not be both held out and trained on."""
    for held in benchmark:
        for seen in training:
            if reason := _same_interview(held, seen):
                raise RaftError(f"{reason}: a held-out interview must not be trained on")


def training_interviews(persona: Persona) -> list[Interview]:
    """The training interviews, after checking that none is also held out."""
    training = load_interviews(persona.transcripts)
    check_held_out(training, load_interviews(persona.benchmark, benchmark=True))
    return training


def sync_interviews(persona: Persona, store) -> None:
    """Put the training interviews into the store as dated memories (never the held-out ones)."""
    store.sync(interview_memory_rows(training_interviews(persona)), kind="interview")


def interview_memory_rows(interviews: list[Interview]) -> list[dict]:
    """Earlier training interviews as store records, dated with their interview."""
    rows = []
    for interview in interviews:
        for number, (question, answer) in enumerate(interview.exchanges):
            text = (
                f"Asked '{question}' in an interview on {interview.date}, "
                f"{INTERVIEW_ANSWER}{answer}"
            )
            rows.append(
                {
                    "id": f"interview:{interview.id}:{number}",
                    "doc_id": f"interview:{interview.id}",
                    "part": number,
                    "total_parts": len(interview.exchanges),
                    "title": f"Interview with {interview.interviewer}",
                    "link": interview.url,
                    "date": interview.date,
                    "text": text,
                }
            )
    return rows


@dataclass(frozen=True)
class ImportedInterview:
    """An interview read from its source, in the transcript format plus how it was made."""

    interviewer: str
    target: str
    date: str
    url: str
    exchanges: list[list[str]]
    stem: str  # base of the file name it is written under
    speakers: list[tuple[str, str, int]]  # (name, "q" | "a", words said), in order of appearance
    made: dict = field(default_factory=dict)  # source, format, labeller, scrubbed counts
    sources: list[list[str]] | None = None  # per exchange, when a transcript JSON has them
    source: str = ""  # SOURCE as given (a path or a URL), for messages
    left_out: dict[str, int] | None = None  # a page's words not imported, by why (page.py)

    def transcript(self) -> dict:
        """The JSON written to transcripts/ or benchmark/."""
        data = {
            "participants": {"q": self.interviewer, "a": self.target},
            "date": self.date,
            "url": self.url,
            "exchanges": self.exchanges,
        }
        if self.sources:
            data["sources"] = self.sources
        if self.made:
            data["imported"] = self.made
        return data

    def words(self) -> tuple[int, int]:
        """Words of the questions and of the answers."""
        return tuple(sum(len(pair[side].split()) for pair in self.exchanges) for side in (0, 1))

    def rewritten(self, change: Callable[[str], str]) -> ImportedInterview:
        """Every question and answer, the speakers' names, the url, the source's name and the
        file name's base passed through `change` (e.g. a privacy scrub): the names reach the
        system prompt of every sample, the url and the base each sample's record."""
        made = self.made | ({"from": change(self.made["from"])} if "from" in self.made else {})
        # Each name once: the interviewer is also among the speakers, and a scrub counts.
        people = [self.interviewer, self.target, *(name for name, _, _ in self.speakers)]
        names = {name: change(name) for name in dict.fromkeys(people)}
        return replace(
            self,
            interviewer=names[self.interviewer],
            target=names[self.target],
            url=change(self.url),
            exchanges=[[change(q), change(a)] for q, a in self.exchanges],
            stem=change(self.stem),
            speakers=[(names[name], side, said) for name, side, said in self.speakers],
            made=made,
        )

    def noted(self, **made) -> ImportedInterview:
        """With more of how it was made recorded in the file (under "imported")."""
        return replace(self, made={**self.made, **made})


def transcript_path(
    persona: Persona, interview: ImportedInterview, benchmark: bool = False
) -> Path:
    """Where an imported interview is written: its date, then its source's name."""
    folder = persona.benchmark if benchmark else persona.transcripts
    slug = re.sub(r"[^a-z0-9]+", "-", interview.stem.lower()).strip("-")[:80] or "interview"
    if not slug.startswith(interview.date):
        slug = f"{interview.date}-{slug}"
    return folder / f"{slug}.json"


def save_transcript(
    persona: Persona, interview: ImportedInterview, benchmark: bool = False
) -> Path:
    """Write an imported interview (raft.interviews.read.ImportedInterview) unless it is one
    already trained on or held out: that is refused before anything is written, naming
    SOURCE."""
    check_lengths(interview.source, interview.exchanges)  # a scrub may have lengthened them
    out = transcript_path(persona, interview, benchmark)
    if out.exists():
        raise UsageError(f"{out} already exists; remove it first to replace it")
    _check_new(persona, interview, out, benchmark)
    write_json(out, interview.transcript())
    return out


def _check_new(persona: Persona, imported: ImportedInterview, out: Path, benchmark: bool) -> None:
    """Refuse, naming SOURCE, an interview that repeats one in transcripts/ or benchmark/."""
    training = training_interviews(persona)  # the files already there must agree first
    held_out = load_interviews(persona.benchmark, benchmark=True)
    new = Interview(
        path=out,
        interviewer=imported.interviewer,
        target=imported.target,
        date=imported.date,
        url=imported.url,
        exchanges=tuple((question, answer) for question, answer in imported.exchanges),
        benchmark=benchmark,
    )
    for other in training + held_out:
        if reason := _same_interview(new, other, imported.source or str(out)):
            why = "already imported"
            if other.benchmark != benchmark:
                why = "a held-out interview must not be trained on"
            raise UsageError(f"{reason}: {why}")
