"""SOURCE of `raft transcript:add` (a file or an http(s) URL) read into an interview ready to
write: the format detected, speaker turns read and paired, who, when and where filled in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from raft.dates import is_iso_date
from raft.errors import RaftError, UsageError
from raft.interviews.podcast import PODCAST_FORMATS, read_podcast
from raft.interviews.speakers import PROMPT, Labeller, assign_speakers
from raft.interviews.turns import ANSWER, QUESTION, Turn, is_target, pair_turns, speakers
from raft.paths import Persona
from raft.prompts import prompt_hashes
from raft.target import display_name
from raft.transcripts import (
    ImportedInterview,
    TranscriptError,
    check_lengths,
    load_interview,
    save_transcript,
)

FORMATS = ("json", "vtt", "srt", "html", "text")
SUFFIXES = {
    ".json": "json",
    ".vtt": "vtt",
    ".srt": "srt",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}
CONTENT_TYPES = {"html": "html", "vtt": "vtt", "subrip": "srt", "srt": "srt", "json": "json"}


@dataclass(frozen=True)
class Source:
    name: str  # as given: a path or a URL
    text: str
    body: bytes
    url: str = ""  # the URL it was fetched from; "" for a file
    content_type: str = ""

    @property
    def stem(self) -> str:
        """A base for the transcript's file name: the file's, or the URL's last segment."""
        if not self.url:
            return Path(self.name).stem
        segments = [s for s in urlsplit(self.url).path.split("/") if s]
        return Path(segments[-1]).stem if segments else urlsplit(self.url).hostname or ""


def load_source(source: str) -> Source:
    """The file's text (a regular file within the per-file budget, UTF-8, not empty), or the
    page at an http(s) URL, fetched like `raft fetch` fetches (size and time limits, no
    public-to-private redirects)."""
    if re.match(r"[a-z][a-z0-9+.-]*://", source, re.I):
        if urlsplit(source).scheme.lower() not in ("http", "https"):
            raise UsageError(f"{source}: not a file or an http(s) URL")
        return _fetch(source)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{source}: no such file")
    if path.is_dir():
        raise UsageError(f"{source}: a folder, not a file")
    if not path.is_file():  # /dev/zero never ends and a FIFO waits for a writer: not read
        raise UsageError(f"{source}: not a regular file (a device, pipe or socket)")
    body = _read_within_budget(source)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{source}: not UTF-8 text") from None
    if not text.strip():
        raise UsageError(f"{source}: empty")
    return Source(source, text.lstrip("\ufeff"), body)


def _read_within_budget(source: str) -> bytes:
    """The file's bytes within the per-file text budget (raft.sources.budget): an interview
    file is all text, so a larger one is refused, and no more than the budget is read."""
    from raft.sources.budget import MB, FileBudget, OverBudget

    budget = FileBudget()
    with open(source, "rb") as handle:
        body = handle.read(int(budget.limits.text_mb * MB) + 1)
    try:
        budget.spend_text(len(body))
    except OverBudget as exc:
        raise UsageError(f"{source}: {exc}") from None
    return body


def _fetch(url: str) -> Source:
    from raft.sources.http import Fetcher, FetchError

    fetcher = Fetcher(per_host=1)
    try:
        response = fetcher.for_source(url).get(url)
    except FetchError as exc:
        raise RaftError(str(exc)) from None
    finally:
        fetcher.close()
    charset = re.search(r"charset=[\"']?([\w.:-]+)", response.content_type, re.I)
    try:
        text = response.body.decode(charset[1] if charset else "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        text = response.text
    if not text.strip():
        raise UsageError(f"{url}: empty")
    return Source(url, text.lstrip("\ufeff"), response.body, url, response.content_type)


def detect_format(source: Source, fmt: str | None = None) -> str:
    """`fmt` if given, else by the name's suffix (.json .vtt .srt .html .htm), else the
    server's content type, else the text itself: WEBVTT, an SRT cue, a JSON object, HTML
    markup; else plain text. Then by content, a JSON or HTML file that is a Podcasting 2.0
    transcript is "podcast-json" or "podcast-html" (raft.interviews.podcast)."""
    from raft.interviews.podcast import dialect

    return dialect(source.text, fmt or _format_by_name(source))


def _format_by_name(source: Source) -> str:
    path = urlsplit(source.url).path if source.url else source.name
    if found := SUFFIXES.get(Path(path).suffix.lower()):
        return found
    kind = source.content_type.split(";")[0].strip().lower()
    for key, found in CONTENT_TYPES.items():
        if key in kind:
            return found
    head = source.text.lstrip()[:4096]
    if head.startswith("WEBVTT"):
        return "vtt"
    if re.match(r"\d+[ \t]*\r?\n[ \t]*\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}[ \t]*-->", head):
        return "srt"
    if head.startswith("{"):
        return "json"
    if head.startswith("<") and re.search(
        r"<(!doctype html|html|head|body|article|main|div|p)\b", head, re.I
    ):
        return "html"
    return "text"


def read_interview(
    source: str,
    *,
    target: str,
    fmt: str | None = None,
    interviewer: str | None = None,
    when: str | None = None,
    url: str | None = None,
    labeller: Labeller | None = None,
) -> ImportedInterview:
    """Read SOURCE (`fmt` forces its format) into exchanges. With `labeller` (a model, e.g.
    a CachedLLM), the paragraphs of a text or page, or the turns of captions, are labelled
    question or answer by the model (raft.interviews.speakers) instead of by the names or
    marks in it."""
    if when and not is_iso_date(when):
        raise UsageError(f"bad --date {when!r}: use YYYY-MM-DD")
    loaded = load_source(source)
    fmt = detect_format(loaded, fmt)
    if labeller is not None and fmt in PODCAST_FORMATS:
        raise UsageError(f"{loaded.name}: a Podcasting 2.0 transcript names its speakers")
    if fmt == "json":
        if labeller is not None:
            raise UsageError(f"{loaded.name}: --assign-speakers labels captions, text or pages")
        return _read_json(loaded)
    known = {target, interviewer or ""}
    page, left_out = None, None  # left_out: words of a page not imported, by why
    if fmt == "html":
        from raft.interviews.page import page_turns, read_page

        page = read_page(loaded.name, loaded.body if loaded.url else loaded.text, loaded.url)
    author = page.author if page else ""
    date = when or (page.date if page else "")
    if not date:
        raise UsageError(f"{loaded.name}: the source gives no date; pass --date YYYY-MM-DD")
    if labeller is not None:
        interviewer = interviewer or author or _no_interviewer(loaded.name, [], target)
        texts = _unlabelled(loaded, fmt, page, known)
        turns = assign_speakers(texts, labeller, target, interviewer)
    elif fmt in ("vtt", "srt"):
        from raft.interviews.captions import read_captions

        turns = read_captions(loaded.name, loaded.text, fmt, known)
    elif fmt in PODCAST_FORMATS:
        turns = read_podcast(loaded.name, loaded.text, fmt)
    elif page is not None:
        turns, left_out = page_turns(loaded.name, page, known)
    else:
        from raft.interviews.text import read_text

        turns = read_text(loaded.text, known)
    named = speakers(turns)
    answered = any(t.speaker == ANSWER for t in turns)
    if named and not answered and not any(is_target(name, target) for name in named):
        raise UsageError(
            f"{loaded.name}: no speaker is {target!r} (it names {', '.join(named)}); "
            "pass --target with the name the source gives the author"
        )
    askers = [name for name in named if not is_target(name, target)]
    if not interviewer:
        interviewer = (
            askers[0]
            if len(askers) == 1
            else author or _no_interviewer(loaded.name, askers, target)
        )
    try:
        exchanges = pair_turns(turns, target)
    except UsageError as exc:
        raise UsageError(f"{loaded.name}: {exc}") from None
    check_lengths(loaded.name, exchanges)
    made = {"from": loaded.url or Path(loaded.name).name, "format": fmt}
    if labeller is not None:
        made["labelled_by"] = labeller.model_id
        made["prompts"] = prompt_hashes(PROMPT)
    return ImportedInterview(
        interviewer=interviewer,
        target=target,
        date=date,
        url=url or loaded.url or (page.url if page else ""),
        exchanges=exchanges,
        stem=loaded.stem or (page.title if page else ""),
        speakers=_sides(turns, named, interviewer, target),
        made=made,
        source=loaded.name,
        left_out=left_out,
    )


def _unlabelled(loaded: Source, fmt: str, page, known: set[str]) -> list[str]:
    """What --assign-speakers labels: the turns of captions (where `>>` or `- ` marks a new
    speaker), else the paragraphs of the page (not its headings or link lists) or text."""
    if fmt in ("vtt", "srt"):
        from raft.interviews.captions import caption_turns

        texts = [turn.text for turn in caption_turns(loaded.name, loaded.text, fmt, known)]
        if len(texts) < 2:
            raise UsageError(f"{loaded.name}: no change of speaker (>> or - ) to label")
        return texts
    if page is not None:
        return [p.text for p in page.paragraphs if not (p.heading or p.linked)]
    from raft.interviews.text import paragraphs

    return paragraphs(loaded.text)


def _no_interviewer(name: str, askers: list[str], target: str) -> str:
    found = f"it names {', '.join(askers)}" if askers else "it names no interviewer"
    raise UsageError(f"{name}: who asks the questions? ({found}); pass --interviewer NAME")


def _sides(
    turns: list[Turn], named: list[str], interviewer: str, target: str
) -> list[tuple[str, str, int]]:
    """(name, side, words said) of each speaker, so a misattributed line shows in the counts:
    an unnamed turn counts for the speaker before it, a question mark for the interviewer
    and an answer mark for the target."""
    said: dict[str, int] = {}
    speaker = ""
    for turn in turns:
        speaker = turn.speaker or speaker
        said[speaker] = said.get(speaker, 0) + len(turn.text.split())
    sides = [(name, "a" if is_target(name, target) else "q", said[name]) for name in named]
    if QUESTION in said and not any(side == "q" for _, side, _ in sides):
        sides.insert(0, (interviewer, "q", said[QUESTION]))
    if ANSWER in said and not any(side == "a" for _, side, _ in sides):
        sides.append((target, "a", said[ANSWER]))
    return sides


def _read_json(loaded: Source) -> ImportedInterview:
    """A transcript JSON, validated (raft.transcripts.load_interview) and kept as it is."""
    if loaded.url:
        raise UsageError(f"{loaded.url}: a transcript JSON must be a local file; download it")
    try:
        interview = load_interview(Path(loaded.name), body=loaded.body)
    except TranscriptError as exc:
        raise UsageError(str(exc)) from None  # a bad input file, as in the other formats
    asked, answered = (sum(len(pair[n].split()) for pair in interview.exchanges) for n in (0, 1))
    return ImportedInterview(
        interviewer=interview.interviewer,
        target=interview.target,
        date=interview.date,
        url=interview.url,
        exchanges=[list(pair) for pair in interview.exchanges],
        stem=Path(loaded.name).stem,
        speakers=[(interview.interviewer, "q", asked), (interview.target, "a", answered)],
        sources=[list(names) for names in interview.sources] or None,
        source=loaded.name,
    )


def add_transcript(
    persona: Persona,
    source: str | Path,
    *,
    interviewer: str | None = None,
    when: str | None = None,
    url: str = "",
    target: str | None = None,
    benchmark: bool = False,
    fmt: str | None = None,
) -> Path:
    """Import an interview from a file or URL (raft.interviews.read); never overwrites."""
    if target is None:
        target = display_name(persona)
    interview = read_interview(
        str(source), target=target, fmt=fmt, interviewer=interviewer, when=when, url=url
    )
    return save_transcript(persona, interview, benchmark)
