"""Interview web pages (fetched or saved) as speaker turns, with the page's metadata.

trafilatura finds the article and keeps its formatting, so the layout survives: questions as
whole bold paragraphs (or headings that ask), `Q:` / `A:` marks, or speaker names at the
start of paragraphs (`Name:` or a bold name)."""

from __future__ import annotations

from dataclasses import dataclass

from raft.dates import normalize_date
from raft.errors import UsageError
from raft.interviews.turns import ANSWER, QUESTION, Turn, accepted_names, split_label


@dataclass(frozen=True)
class Paragraph:
    text: str
    bold: bool = False  # the whole paragraph is bold, or a heading that asks a question
    lead: str = ""  # a bold run that starts the paragraph, e.g. "Jo Park:"


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
    """The article's paragraphs (formatting noted) and the page's title, author, date and
    canonical url; the date only from the page's metadata, never guessed from its text."""
    import trafilatura
    from lxml import etree

    xml = trafilatura.extract(
        html,
        url=url,
        output_format="xml",
        include_formatting=True,
        include_links=False,
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


def _is_bold(element) -> bool:
    return element.tag == "hi" and "#b" in (element.get("rend") or "")


def _paragraphs(main) -> list[Paragraph]:
    found = []
    for element in main:
        text = _words("".join(element.itertext()))
        if not text:
            continue
        if element.tag == "head":
            if element.get("rend") != "h1" and text.endswith("?"):
                found.append(Paragraph(text, bold=True))
            continue  # other headings are the page's sections, not anyone's words
        if element.tag == "list":
            items = [_words("".join(item.itertext())) for item in element.iter("item")]
            found.append(Paragraph("\n".join(item for item in items if item)))
            continue
        bolds = [child for child in element if _is_bold(child)]
        bold_text = _words(" ".join("".join(b.itertext()) for b in bolds))
        starts_bold = bool(bolds) and element[0] is bolds[0] and not (element.text or "").strip()
        found.append(
            Paragraph(
                text,
                bold=bool(bolds) and bold_text == text,
                lead=_words("".join(bolds[0].itertext())) if starts_bold else "",
            )
        )
    return found


def page_turns(name: str, page: Page, known: set[str] = frozenset()) -> list[Turn]:
    """Speaker turns by the page's layout: `Q:` and `A:` marks if it has both; else speaker
    names; else questions alone, as bold paragraphs (or `Q:` marks) each answered by the
    plain paragraphs after it. Paragraphs before the first labelled one (an introduction)
    are dropped."""
    found = []
    for paragraph in page.paragraphs:
        label, rest = split_label(paragraph.text, known)
        lead = paragraph.lead.rstrip(":").strip()
        if not label and lead and paragraph.text.startswith(paragraph.lead):
            label, rest = split_label(f"{lead}: {paragraph.text[len(paragraph.lead) :]}", known)
        found.append((label, rest))
    labels = [label for label, _ in found]
    names = accepted_names([lb for lb in labels if lb not in (QUESTION, ANSWER)], known)
    turns: list[Turn] = []
    if (QUESTION in labels and ANSWER in labels) or names:
        speakers = {QUESTION, ANSWER} if ANSWER in labels else names
        for paragraph, (label, rest) in zip(page.paragraphs, found, strict=True):
            if label in speakers:
                turns.append(Turn(label, rest))
            elif turns:
                turns.append(Turn("", paragraph.text))
    else:
        for paragraph, (label, rest) in zip(page.paragraphs, found, strict=True):
            if label == QUESTION:
                turns.append(Turn(QUESTION, rest))
            elif paragraph.bold:
                turns.append(Turn(QUESTION, paragraph.text))
            elif turns:
                turns.append(Turn(ANSWER, paragraph.text))
    if not turns:
        raise UsageError(
            f"{name}: no interview layout found (bold questions, Q:/A: marks or `Name:` "
            "paragraphs); label it, or use --assign-speakers"
        )
    return turns
