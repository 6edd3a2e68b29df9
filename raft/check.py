"""`raft check`: leakage and integrity checks a user can run on a persona at any time.

Each check reads what the stages wrote and reports pass or fail with the first offender,
so a failure names the file and the sample to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from raft.backends.cache import Cache
from raft.conversation import system_prompt
from raft.dataset import Sample
from raft.errors import RaftError
from raft.files import read_jsonl
from raft.paths import Persona
from raft.transcripts import check_held_out, load_interviews

MIN_WORDS = 10  # held-out texts shorter than this can appear anywhere by chance


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def held_out_texts(persona: Persona) -> list[tuple[str, str]]:
    """(normalised text, where it comes from) for every long enough held-out question/answer."""
    texts = []
    for interview in load_interviews(persona.benchmark, benchmark=True):
        for number, pair in enumerate(interview.exchanges, 1):
            for kind, text in zip(("question", "answer"), pair, strict=True):
                if len(norm(text).split()) >= MIN_WORDS:
                    texts.append((norm(text), f"{kind} {number} of {interview.path.name}"))
    return texts


def find_held_out(blobs: Iterator[tuple[str, str]], held: list[tuple[str, str]]) -> str | None:
    """The first (place, held-out text) match among (place, text) blobs, described."""
    for place, text in blobs:
        flat = norm(text)
        for needle, source in held:
            if needle in flat:
                return f"{place} contains held-out {source}"
    return None


def file_lines(folder: Path) -> Iterator[tuple[str, str]]:
    for path in sorted(folder.rglob("*.json*")) if folder.is_dir() else []:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                yield f"{path}:{number}", line


def store_documents(persona: Persona) -> Iterator[tuple[str, str]]:
    """Every text in the persona's store, embedded or on the `RAFT_CHROMA_URL` server."""
    from raft.backends.embed import make_embedder
    from raft.store import Store
    from raft.workspace import Workspace

    # Reading stored text embeds nothing, so the embedder goes without the call cache:
    # a check should not create cache.sqlite.
    spec = Workspace.open(persona).spec("embedder")
    store = Store(persona, make_embedder(spec, models_dir=persona.models))
    yield from ((f"store record {i}", doc) for i, doc in store.documents())


def training_samples(persona: Persona) -> list[Sample]:
    path = persona.finetune / "raft.jsonl"
    return [Sample.from_row(row) for row in read_jsonl(path)] if path.is_file() else []


def check_separate(persona: Persona) -> str | None:
    try:
        check_held_out(
            load_interviews(persona.transcripts), load_interviews(persona.benchmark, True)
        )
    except RaftError as exc:
        return str(exc)
    return None


def check_memory_dates(persona: Persona) -> str | None:
    """Every memory in a training sample predates its interview (or its passage)."""
    for sample in training_samples(persona):
        for memory in sample.memories:
            if memory.date and memory.date >= sample.date:
                return (
                    f"sample {sample.id} recalls {memory.chunk_id} dated {memory.date}, "
                    f"not before {sample.date}"
                )
    return None


def check_answers_verbatim(persona: Persona) -> str | None:
    """Real answers are a transcript's; synthetic answers are the author's own passages."""
    answers = {a for i in load_interviews(persona.transcripts) for _, a in i.exchanges}
    chunks: dict[str, str] = {}
    if persona.chunks.is_file():
        chunks = {c["id"]: norm(c["text"]) for c in read_jsonl(persona.chunks)}
    for sample in training_samples(persona):
        final = sample.messages[-1]["content"]
        if final != sample.answer:
            return f"sample {sample.id}: the final message is not the recorded answer"
        if not sample.synthetic and final not in answers:
            return f"sample {sample.id}: the answer is in no transcript"
        if sample.synthetic:
            source = chunks.get(sample.source_chunk, "")
            lines = [norm(line) for line in final.splitlines() if norm(line)]
            if not source or not all(line in source for line in lines):
                return f"sample {sample.id}: the answer is not the text of {sample.source_chunk}"
    return None


def check_system_prompts(persona: Persona) -> str | None:
    """System prompts are the template's, so no scraped text reached them."""
    for sample in training_samples(persona):
        expected = system_prompt(sample.target, sample.interviewer, sample.date)
        if sample.messages[0] != {"role": "system", "content": expected}:
            return f"sample {sample.id}: the system prompt differs from the template"
    return None


def check_training_calls(persona: Persona, held: list[tuple[str, str]]) -> str | None:
    """No held-out text in any request ft:gen sent (read back from the call cache)."""
    if not (persona.finetune / "raft.jsonl").is_file():
        return None
    listed = persona.cache_keys
    first = f"run `raft ft:gen {persona.name}` to record them (cached calls cost nothing)"
    if not listed.is_file():
        return f"{listed} is missing, so the calls behind finetune/ are unknown: {first}"
    keys = listed.read_text(encoding="utf-8").split()
    requests = Cache(persona.cache).requests(keys) if persona.cache.is_file() else {}
    unknown = [key for key in keys if requests.get(key) is None]
    if unknown:
        return (
            f"{len(unknown)} of {len(keys)} calls listed in {listed} have no request in "
            f"{persona.cache} (first: {unknown[0]}): {first}"
        )

    def sent() -> Iterator[tuple[str, str]]:
        for key in keys:
            messages = json.loads(requests[key] or "{}").get("messages") or []
            text = "\n".join(str(m.get("content") or "") for m in messages)
            yield f"the call {key} listed in {listed}", text

    return find_held_out(sent(), held)


def corpus_chunks(persona: Persona) -> Iterator[tuple[str, str]]:
    if persona.chunks.is_file():
        yield from ((f"chunk {c['id']}", c["text"]) for c in read_jsonl(persona.chunks))


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _line_text(line: str) -> str:
    """A JSON line's strings as written before escaping ("\\nJo" is a line break, then Jo);
    any other line as it is."""
    try:
        value = json.loads(line)
    except ValueError:
        return line
    return "\n".join(_strings(value)) if isinstance(value, dict | list) else line


def check_personal_data(persona: Persona) -> str | None:
    """No e-mail address, phone number, personal URL token or blocked word in any file of
    any dataset under finetune/. Says what and where, never the match itself, and what to
    run to fix it."""
    from raft.scrub import KINDS, blocked_words, find_private, hint

    try:
        blocked = blocked_words(persona)
    except RaftError as exc:
        return f"cannot read the blocked words: {exc}"
    folder = persona.finetune
    first, matched, files = "", [], set()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                private = find_private(_line_text(line), blocked)
                if private and not first:
                    kind, text = private[0]
                    first = f"{path}:{number} has {KINDS[kind]} ({hint(kind, text)})"
                matched += [text for _, text in private]
                files.update([path] if private else [])
    if not matched:
        return None
    more = f"; {len(matched)} in all, in {len(files)} file(s)" if len(matched) > 1 else ""
    return f"{first}{more}: {fixes_for(persona, matched)}"


def _first_holders(paths: list[Path], texts: list[str]) -> dict[str, Path]:
    """For each text, the first of `paths` whose lines hold it, read a line at a time (a
    corpus may be far larger than memory wants to hold)."""
    holders: dict[str, Path] = {}
    for path in paths:
        wanted = [t for t in texts if t not in holders]
        if not wanted:
            break
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                text = _line_text(line)
                holders.update((t, path) for t in wanted if t not in holders and t in text)
    return holders


def fixes_for(persona: Persona, matched: list[str]) -> str:
    """The commands that remove personal data found in finetune/, by where ft:gen took it
    from: a training transcript (its text, url or names), or the corpus (a document's text,
    title or link); what is in neither was written into finetune/ some other way."""
    name = persona.name
    corpus = [p for p in (persona.corpus, persona.chunks) if p.is_file()]
    sources = [*sorted(persona.transcripts.glob("*.json")), *corpus]
    distinct = list(dict.fromkeys(matched))[:50]  # enough to name every place it comes from
    holders = _first_holders(sources, distinct)
    found = dict.fromkeys(holders.get(t) for t in distinct)
    transcripts = [p for p in found if p is not None and p not in corpus]
    fixes = []
    if transcripts:
        others = f" and {len(transcripts) - 1} more" if len(transcripts) > 1 else ""
        fixes.append(
            f"it is in {transcripts[0]}{others}: move the file out of {persona.transcripts} "
            f"and add it again with `raft transcript:add {name} FILE --scrub` (or edit it)"
        )
    if any(p in corpus for p in found):
        fixes.append(
            f"it is in the corpus: move {persona.corpus} aside (a fetch never rewrites a "
            f"document it has), run `raft fetch {name} --scrub`, `raft chunk {name}` and "
            f"`raft embed {name}`"
        )
    if None in found:
        fixes.append("it is in no transcript or corpus file: edit or remove it in finetune/")
    return "; ".join(fixes) + f"; then run `raft ft:gen {name}`"


def run_checks(persona: Persona) -> list[Check]:
    """Every check, in order; each names the first offender it finds."""
    held = held_out_texts(persona)
    checks: list[tuple[str, Callable[[], str | None]]] = [
        ("held-out interviews are not training interviews", lambda: check_separate(persona)),
        ("no held-out text in the corpus", lambda: find_held_out(corpus_chunks(persona), held)),
        ("no held-out text in the store", lambda: find_held_out(store_documents(persona), held)),
        (
            "no held-out text in finetune/",
            lambda: find_held_out(file_lines(persona.finetune), held),
        ),
        (
            "no held-out text in the calls behind finetune/",
            lambda: check_training_calls(persona, held),
        ),
        ("memories predate their interview", lambda: check_memory_dates(persona)),
        ("answers are the author's own words", lambda: check_answers_verbatim(persona)),
        ("system prompts are the template", lambda: check_system_prompts(persona)),
        ("no personal data in finetune/", lambda: check_personal_data(persona)),
    ]
    results = []
    for name, run in checks:
        problem = run()
        results.append(Check(name, problem is None, problem or ""))
    return results
