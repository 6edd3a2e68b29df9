"""PDF text as prose: ligatures, line-end hyphens and paragraphs, from PDFs typeset here."""

from __future__ import annotations

from pathlib import Path

from raft.chunking import chunk_document
from raft.files import read_jsonl
from tests.helpers import run_cli

# The lines of an essay as a typesetter set them: ligature glyphs, words broken at line ends,
# headings, a list, a paragraph running on over two page breaks, a blank (scanned) page.
PAGES = [
    [
        "Uniﬁed Notes on Bees",
        "My grandmother kept bees behind the bakery on Mill Street, and every",
        "spring she opened the hives with bare hands. Her eﬀorts were never",
        "written down; her only deﬁnition of good honey was the smell of hum-",
        "ming hives at dusk, a definition nobody used.",
        "The bees were well-known in the village, and the baker's oﬃce smelled",
        "of wax all summer. Visitors were baﬄed by how calm the swarms were",
        "around her, and by how the ﬂow of the nectar seemed to follow her.",
        "The Canal",
        "Herons stand like grey umbrellas in the shallows of the canal, and I",
    ],
    [
        "walk the towpath each Sunday before the town wakes. The lock keeper",
    ],
    [
        "waves from his hut with a mug of tea, and his dog watches with a deﬁ-",
        "nition of patience that I envy. He keeps a list of what he sees:",
        "- herons, counted twice because nobody else counts them;",
        "- a kingﬁsher on the third Sunday of every month;",
        "- a morning each March when the low sun through the lock gates is an X-",
        "ray of the water at dawn.",
        "Everything on that list, he told me one morning, is perfectly well-",
        "known to him, and he says the canal is a kind of diary.",
    ],
    [],
    [
        "Sourdough wants forty hours and a patient cook, which is why my",
        "starter is older than my youngest nephew and why I give away a jar",
        "of it to anyone who asks.",
    ],
]

CONTENT = (
    "Unified Notes on Bees\n\n"
    "My grandmother kept bees behind the bakery on Mill Street, and every spring she opened "
    "the hives with bare hands. Her efforts were never written down; her only definition of "
    "good honey was the smell of humming hives at dusk, a definition nobody used.\n\n"
    "The bees were well-known in the village, and the baker's office smelled of wax all "
    "summer. Visitors were baffled by how calm the swarms were around her, and by how the flow "
    "of the nectar seemed to follow her.\n\n"
    "The Canal\n\n"
    "Herons stand like grey umbrellas in the shallows of the canal, and I walk the towpath each "
    "Sunday before the town wakes. The lock keeper waves from his hut with a mug of tea, and "
    "his dog watches with a definition of patience that I envy. He keeps a list of "
    "what he sees:\n\n"
    "- herons, counted twice because nobody else counts them;\n"
    "- a kingfisher on the third Sunday of every month;\n"
    "- a morning each March when the low sun through the lock gates is an X-ray of the water "
    "at dawn.\n\n"
    "Everything on that list, he told me one morning, is perfectly well-known to him, and he "
    "says the canal is a kind of diary.\n\n"
    "Sourdough wants forty hours and a patient cook, which is why my starter is older than my "
    "youngest nephew and why I give away a jar of it to anyone who asks."
)
# Where each page starts: pages 2 and 3 inside a paragraph, blank page 4 where page 5 does.
PAGE_STARTS = ["Unified Notes", "walk the towpath", "waves from his", "Sourdough", "Sourdough"]


def typeset(path: Path, pages: list[list[str]]) -> Path:
    """A text PDF of US Letter pages, 10 pt lines 12 pt apart from a 1-inch margin, as a word
    processor sets them (an empty list is a page without text)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with PdfPages(path, metadata={"CreationDate": None}) as pdf:
        for lines in pages:
            figure = Figure(figsize=(8.5, 11))
            for row, line in enumerate(lines):
                figure.text(1 / 8.5, 1 - (72 + 12 * row) / 792, line, fontsize=10, va="top")
            pdf.savefig(figure)
    return path


def test_pdf_text_is_paragraphs_of_whole_words_with_pages_kept(data_dir, tmp_path):
    pdf = typeset(tmp_path / "bees.pdf", PAGES)
    result = run_cli("raft", "fetch", "author", "--from", str(pdf))
    assert result.returncode == 0, result.stderr
    (doc,) = read_jsonl(data_dir / "author" / "corpus.jsonl")
    assert doc["content"] == CONTENT
    assert [
        doc["content"][start:][: len(text)]
        for start, text in zip(doc["pages"], PAGE_STARTS, strict=True)
    ] == PAGE_STARTS

    # A chunk names the pages its words are on; a sentence across a page break names both.
    chunks = chunk_document(doc, max_tokens=24, overlap_tokens=0)
    assert "".join(chunk.text for chunk in chunks) == CONTENT
    spans = {
        words: next(chunk.pages for chunk in chunks if words in chunk.text)
        for words in ("Unified Notes", "The lock keeper waves", "kingfisher", "Sourdough")
    }
    assert spans == {
        "Unified Notes": (1, 1),
        "The lock keeper waves": (2, 3),
        "kingfisher": (3, 3),
        "Sourdough": (5, 5),
    }


def test_a_line_end_hyphen_is_kept_or_dropped_by_what_the_document_says():
    from raft.sources.pdftext import pdf_text

    # long-/term: the compound occurs in the document, kept. re-/built: neither form occurs
    # and `re` is no word here, dropped. COVID-: capitals, kept. 1990-/1995, Smith-/Jones:
    # no letter pair to join, kept without a space. state-of-the-: a compound already, kept.
    # A soft hyphen: dropped. sim-/ple: `simple` occurs, dropped.
    lines = [
        "Our long-term plan was simple, and the kit we had for it was a long-",
        "term plan as well: the hospital wards were to be completely re-",
        "built, beginning with the ward that had been kept apart for COVID-",
        "related care, from a sketch the architect had drawn in the years 1990-",
        "1995 with his partner, the engineer everyone knew simply as Smith-",
        "Jones, around a pump that was, in its day, thoroughly state-of-the-",
        "art and came with a thick ring binder for its long and not at all sim\u00ad",
        "ple service history, in which every single repair and every sim-",
        "ple adjustment was written down.",
    ]
    assert pdf_text(["\n".join(lines)]) == (
        "Our long-term plan was simple, and the kit we had for it was a long-term plan as well: "
        "the hospital wards were to be completely rebuilt, beginning with the ward that had been "
        "kept apart for COVID-related care, from a sketch the architect had drawn in the years "
        "1990-1995 with his partner, the engineer everyone knew simply as Smith-Jones, around a "
        "pump that was, in its day, thoroughly state-of-the-art and came with a thick ring "
        "binder for its long and not at all simple service history, in which every single "
        "repair and every simple adjustment was written down.",
        (0,),
    )
