"""Interview web pages (fetched or saved) as speaker turns, with the page's metadata.

trafilatura finds the article and keeps its formatting, so the layout survives: questions as
whole bold paragraphs (or headings that ask), `Q:` / `A:` marks, or speaker names at the
start of paragraphs (`Name:` or a bold name).

What the page says rather than the people in it is left out, by these rules, and counted:

- Link blocks: a paragraph or list whose words are at least half link text (related posts,
  "read also", a list of further links) is never a question or an answer, wherever it
  stands; nor is a short label ending in ":" just before one ("Further links:").
- End matter: after the last exchange has begun (the last question and the first paragraph
  of its answer), the first block that opens like a page's own line ("Want to know more",
  "Follow her on", "Subscribe", "Related posts", "Further reading", "Check back") is dropped
  with everything after it, as is a run of wholly italic blocks that ends the article (the
  sign-off set in italics). The last answer's first paragraph is always kept, and a bold
  line that opens that way ("Related posts:") is never taken for a question.
- Headings: a heading that asks is a question. Any other heading stands between sections
  unless it sits between two paragraphs of one speaker: then it is that speaker's pull
  quote, kept in their turn where it stands, unless it repeats words found elsewhere in the
  article (a pull quote that copies a sentence is not said twice).
- Paragraphs before the first question or label (an introduction) are dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass

from raft.dates import normalize_date
from raft.errors import UsageError
from raft.interviews.turns import ANSWER, QUESTION, Turn, accepted_names, split_label

# Why words of the article were left out, in the order the import summary lists them.
LEFT_OUT = {
    "introduction": "before the first question",
    "headings": "in headings",
    "links": "in link lists",
    "end": "after the interview",
}
# How a page's own lines open: follow, subscribe, related and further links, sign-offs.
_PAGE_LINE = re.compile(
    r"\W*(want to (know|read|hear|learn|see) more|follow (\S+ ){1,3}(on|at)\b|follow along\b"
    r"|subscribe\b|sign up\b|related(\s*:| (posts|articles|stories|reading|links)\b)"
    r"|further (links|reading)|more (from|by) |read more\b|check back\b"
    r"|you (might|may) also (like|enjoy)|share (this|on)\b)",
    re.I,
)


@dataclass(frozen=True)
class Paragraph:
    text: str
    bold: bool = False  # the whole paragraph is bold, or a heading that asks a question
    lead: str = ""  # a bold run that starts the paragraph, e.g. "Jo Park:"
    heading: bool = False  # a heading that does not ask: a section's title or a pull quote
    italic: bool = False  # the whole paragraph is set in italics
    linked: bool = False  # at least half of its words are link text

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Page:
    title: str
    author: str
    date: str  # YYYY-MM-DD from the page's metadata, or ""
    url: str  # the canonical link, or ""
    paragraphs: list[Paragraph]


def _words(text: str) -> str:
    return " ".join(text.split())


def read_page(name: str, html: str | bytes, url: str | None = None) -> Page:
    """The article's paragraphs (formatting and links noted) and the page's title, author,
    date and canonical url; the date only from the page's metadata, never guessed from its
    text."""
    import trafilatura
    from lxml import etree

    xml = trafilatura.extract(
        html,
        url=url,
        output_format="xml",
        include_formatting=True,
        include_links=True,  # to tell a list of links from an answer
        include_images=False,
        include_tables=False,
        include_comments=False,
        favor_recall=True,
    )
    if not xml:
        raise UsageError(f"{name}: no article text found in the page")
    main = etree.fromstring(xml.encode("utf-8")).find("main")
    paragraphs = [] if main is None else _paragraphs(main)
    if not paragraphs:
        raise UsageError(f"{name}: no article text found in the page")
    meta = trafilatura.extract_metadata(html, default_url=url, extensive=False)
    return Page(
        title=_words(meta.title or ""),
        author=_words(meta.author or ""),
        date=normalize_date(meta.date),
        url=(meta.url or "").strip(),
        paragraphs=paragraphs,
    )


def _styled(element, style: str) -> bool:
    return element.tag == "hi" and style in (element.get("rend") or "")


def _inner(elements) -> str:
    return _words(" ".join("".join(e.itertext()) for e in elements))


def _paragraphs(main) -> list[Paragraph]:
    found = []
    for element in main:
        text = _words("".join(element.itertext()))
        if not text:
            continue
        linked = 2 * len(_inner(element.iter("ref")).split()) >= len(text.split())
        if element.tag == "head":
            if element.get("rend") == "h1":
                continue  # the page's title
            asks = text.endswith("?")
            found.append(Paragraph(text, bold=asks, heading=not asks, linked=linked))
            continue
        if element.tag == "list":
            items = [_words("".join(item.itertext())) for item in element.iter("item")]
            found.append(Paragraph("\n".join(item for item in items if item), linked=linked))
            continue
        bolds = [child for child in element if _styled(child, "#b")]
        bold_text = _inner(bolds)
        starts_bold = bool(bolds) and element[0] is bolds[0] and not (element.text or "").strip()
        italics = [child for child in element if _styled(child, "#i")]
        found.append(
            Paragraph(
                text,
                bold=bool(bolds) and bold_text == text,
                lead=_words("".join(bolds[0].itertext())) if starts_bold else "",
                italic=bool(italics) and _inner(italics) == text,
                linked=linked,
            )
        )
    return found


def page_turns(
    name: str, page: Page, known: set[str] = frozenset()
) -> tuple[list[Turn], dict[str, int]]:
    """Speaker turns by the page's layout, and the words of the article left out (by why, keys
    of LEFT_OUT): `Q:` and `A:` marks if it has both; else speaker names; else questions
    alone, as bold paragraphs (or `Q:` marks) each answered by the plain paragraphs after it.
    Links, end matter and headings as the module says."""
    left: dict[str, int] = {}
    blocks = _without_links(page.paragraphs, left)
    labels = [("", p.text) if p.heading else _label(p, known) for p in blocks]
    marks = [label for label, _ in labels]
    names = accepted_names([m for m in marks if m not in (QUESTION, ANSWER)], known)
    if (QUESTION in marks and ANSWER in marks) or names:
        speakers = {QUESTION, ANSWER} if ANSWER in marks else names
        starts = [mark in speakers for mark in marks]
    else:  # questions alone: an unlabelled paragraph answers the question before it
        speakers = set()
        # A bold "Related posts:" is the page's label, not a question.
        asks = [p.bold and not _PAGE_LINE.match(p.text) for p in blocks]
        starts = [mark == QUESTION or bold for mark, bold in zip(marks, asks, strict=True)]
    if not any(starts):
        raise UsageError(
            f"{name}: no interview layout found (bold questions, Q:/A: marks or `Name:` "
            "paragraphs); label it, or use --assign-speakers"
        )
    last = max(i for i, start in enumerate(starts) if start)
    # The last exchange has begun once its question and its answer's first paragraph are in.
    begun = min(last + 1 if speakers and labels[last][1] else last + 2, len(blocks))
    kept = begun + _end_matter(blocks[begun:])
    _count(left, "end", blocks[kept:])
    body = " ".join(_words(p.text).casefold() for p in blocks if not p.heading)
    follows = _next_paragraphs(blocks[:kept])
    turns: list[Turn] = []
    for index in range(kept):
        paragraph, (label, rest) = blocks[index], labels[index]
        if paragraph.heading:
            # Between two paragraphs of one speaker: a pull quote, unless it copies a sentence.
            after = follows[index]
            inside = after is not None and not starts[after] and bool(turns)
            same = inside and (speakers or turns[-1].speaker == ANSWER)
            if same and _words(paragraph.text).casefold() not in body:
                turns.append(Turn("" if speakers else ANSWER, paragraph.text))
            else:
                _count(left, "headings", [paragraph])
        elif starts[index]:
            mark = label if speakers else QUESTION
            turns.append(Turn(mark, rest if label == mark else paragraph.text))
        elif turns:
            turns.append(Turn("" if speakers else ANSWER, paragraph.text))
        else:
            _count(left, "introduction", [paragraph])
    return turns, left


def _label(paragraph: Paragraph, known: set[str]) -> tuple[str, str]:
    label, rest = split_label(paragraph.text, known)
    lead = paragraph.lead.rstrip(":").strip()
    if not label and lead and paragraph.text.startswith(paragraph.lead):
        label, rest = split_label(f"{lead}: {paragraph.text[len(paragraph.lead) :]}", known)
    return label, rest


def _next_paragraphs(blocks: list[Paragraph]) -> list[int | None]:
    """For each block, the index of the next one that is not a heading (None at the end)."""
    found: list[int | None] = [None] * len(blocks)
    for index in range(len(blocks) - 2, -1, -1):
        after = index + 1
        found[index] = found[after] if blocks[after].heading else after
    return found


def _without_links(paragraphs: list[Paragraph], left: dict[str, int]) -> list[Paragraph]:
    """The paragraphs less link blocks and the short "Label:" paragraph just before each."""
    kept: list[Paragraph] = []
    for paragraph in paragraphs:
        if not paragraph.linked:
            kept.append(paragraph)
            continue
        if kept and kept[-1].text.endswith(":") and kept[-1].words <= 6:
            _count(left, "links", [kept.pop()])
        _count(left, "links", [paragraph])
    return kept


def _end_matter(after: list[Paragraph]) -> int:
    """How many of the blocks after the last exchange began are the interview's, not the
    page's: up to the first that opens like a page's own line, less a closing italic run."""
    kept = next((i for i, p in enumerate(after) if _PAGE_LINE.match(p.text)), len(after))
    while kept and after[kept - 1].italic:
        kept -= 1
    return kept


def _count(left: dict[str, int], why: str, paragraphs: list[Paragraph]) -> None:
    words = sum(p.words for p in paragraphs)
    if words:
        left[why] = left.get(why, 0) + words


def describe_left_out(left: dict[str, int]) -> str:
    """The summary's line: "left out of the page: 52 words (21 before the first question, …)"."""
    total = sum(left.values())
    parts = ", ".join(f"{left[why]:,} {what}" for why, what in LEFT_OUT.items() if why in left)
    return f"left out of the page: {total:,} words" + (f" ({parts})" if parts else "")
