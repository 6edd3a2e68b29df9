"""`raft fetch --from` PDF, EPUB and DOCX files, made here with real writers of each format."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from raft.chunking import chunk_document
from raft.errors import RaftError
from raft.files import read_jsonl
from raft.store import record_metadata
from tests.helpers import run_cli

PDF_PAGES = [
    [
        "My grandmother kept bees behind the bakery.",
        "Every spring she opened the hives with bare hands.",
        "The smoke smelled of pine needles and old rope.",
        "She said the bees knew her by her humming.",
    ],
    [
        "Herons stand like grey umbrellas in the shallows.",
        "I walk the canal each Sunday before the town wakes.",
        "The lock keeper waves from his hut with a mug of tea.",
        "Nobody else counts the herons, so I count them twice.",
    ],
    [
        "Sourdough wants forty hours and a patient cook.",
        "My starter is older than my youngest nephew.",
        "I give away a jar of it to anyone who asks.",
        "Bread made slowly tastes of the kitchen it was made in.",
    ],
]
PAGE_TWO = "Herons stand like grey umbrellas in the shallows."


def write_pdf(path: Path, pages: list[list[str]], metadata: dict | None = None) -> Path:
    """A real text PDF: one page per list of lines (an empty list makes a blank page)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    # matplotlib dates a PDF "now" unless told otherwise; None leaves the date out.
    with PdfPages(path, metadata=metadata or {"CreationDate": None}) as pdf:
        for lines in pages:
            figure = Figure(figsize=(8.5, 11))
            for row, line in enumerate(lines):
                figure.text(0.08, 0.92 - 0.04 * row, line, fontsize=10)
            pdf.savefig(figure)
    return path


def corpus(data_dir: Path, name: str = "author") -> list[dict]:
    return list(read_jsonl(data_dir / name / "corpus.jsonl"))


def fetch(*sources: Path):
    args = [arg for source in sources for arg in ("--from", str(source))]
    return run_cli("raft", "fetch", "author", *args)


def words(text: str) -> list[str]:
    """The words of a text, without the Markdown marks of headings and list items."""
    marks = {"-", "1.", "2.", "3."}
    return [word for word in text.split() if word not in marks and set(word) != {"#"}]


def test_pdf_is_one_document_whose_chunks_name_their_pages(data_dir, tmp_path):
    created = datetime(2021, 4, 5, 10, 30, tzinfo=UTC)
    pdf = write_pdf(
        tmp_path / "notes.pdf", PDF_PAGES, {"Title": "Field Notes", "CreationDate": created}
    )
    essay = tmp_path / "essay.md"
    essay.write_text("# Essay\n\nA plain essay has no pages at all.\n")
    result = fetch(pdf, essay)
    assert result.returncode == 0, result.stderr
    assert "2 new" in result.stdout and "0 failed" in result.stdout
    docs = {doc["title"]: doc for doc in corpus(data_dir)}
    doc = docs["Field Notes"]
    assert doc["date"] == "2021-04-05"
    assert doc["content"].split() == " ".join(line for page in PDF_PAGES for line in page).split()
    assert "\n\n" in doc["content"]  # pages are joined by a blank line
    # Each page starts where the corpus row says, with its first line (lines are reflowed).
    assert [
        doc["content"][start:][: len(page[0])]
        for start, page in zip(doc["pages"], PDF_PAGES, strict=True)
    ] == [page[0] for page in PDF_PAGES]
    assert "pages" not in docs["Essay"]  # rows of other documents are as they were

    result = run_cli("raft", "chunk", "author", "--max-tokens", "32", "--overlap", "4")
    assert result.returncode == 0, result.stderr
    chunks = list(read_jsonl(data_dir / "author" / "chunks.jsonl"))
    pdf_chunks = [chunk for chunk in chunks if chunk["doc_id"] == doc["id"]]
    assert len(pdf_chunks) >= 3
    spans = [tuple(chunk["pages"]) for chunk in pdf_chunks]
    assert all(1 <= first <= last <= 3 for first, last in spans)
    assert spans[0][0] == 1 and spans[-1][1] == 3
    assert [first for first, _ in spans] == sorted(first for first, _ in spans)
    assert [last for _, last in spans] == sorted(last for _, last in spans)
    assert {page for first, last in spans for page in range(first, last + 1)} == {1, 2, 3}
    for chunk, (first, last) in zip(pdf_chunks, spans, strict=True):
        for number, page in enumerate(PDF_PAGES, 1):
            if any(line in chunk["text"] for line in page):
                assert first <= number <= last, (chunk["text"], first, last)
    herons = [
        span for chunk, span in zip(pdf_chunks, spans, strict=True) if PAGE_TWO in chunk["text"]
    ]
    assert herons and all(first <= 2 <= last for first, last in herons)
    assert all("pages" not in chunk for chunk in chunks if chunk["doc_id"] != doc["id"])
    # In Chroma a span is a scalar, as its metadata requires.
    assert record_metadata(pdf_chunks[0], "chunk")["pages"] == "1"
    assert record_metadata({**pdf_chunks[0], "pages": [3, 4]}, "chunk")["pages"] == "3–4"
    assert "pages" not in record_metadata(chunks[-1], "chunk")


def test_pdf_without_metadata_is_named_and_dated_by_its_file(data_dir, tmp_path):
    pdf = write_pdf(tmp_path / "2019-11-02-talk.pdf", [PDF_PAGES[0]])
    assert fetch(pdf).returncode == 0
    (doc,) = corpus(data_dir)
    assert (doc["title"], doc["date"]) == ("2019-11-02-talk", "2019-11-02")
    assert doc["pages"] == [0]


def test_a_blank_page_holds_no_chunk_and_bad_page_offsets_are_refused():
    first, third = " ".join(PDF_PAGES[0]), " ".join(PDF_PAGES[2])
    start = len(first) + 2
    # Page 2 had no text (a scanned page): it starts where page 3 does.
    doc = {"id": "d", "content": f"{first}\n\n{third}", "pages": [0, start, start]}
    assert [chunk.pages for chunk in chunk_document(doc, 48, 0)] == [(1, 1), (3, 3)]
    assert [chunk.pages for chunk in chunk_document(doc, 512, 0)] == [(1, 3)]
    with pytest.raises(RaftError, match="pages"):
        chunk_document({**doc, "pages": [0, start, 10]})


def write_epub(path: Path) -> dict[str, list[str]]:
    """A book of three chapters (the last without a heading); returns each chapter's text."""
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("urn:uuid:lena-walks")
    book.set_title("Walking Home")
    book.set_language("en")
    book.add_author("Lena Marsh")
    book.add_metadata("DC", "date", "2019-06-01")
    chapters = {
        "Rivers": (
            "<h1>Rivers</h1><p>Herons wait in the reeds.</p><p>The water runs <em>brown</em> "
            "after rain.</p><ul><li>a flask of tea</li><li>boots that leak</li></ul>"
        ),
        "Bread": (
            "<h1>Bread</h1><h2>The starter</h2><p>Gerald is nine years old.</p>"
            "<ol><li>Feed him flour.</li><li>Wait a day.</li></ol>"
        ),
        "": "<p>An ending with no heading at all.</p><p>Just two short paragraphs.</p>",
    }
    items = []
    for number, (name, body) in enumerate(chapters.items(), 1):
        item = epub.EpubHtml(title=name or "End", file_name=f"ch{number}.xhtml", lang="en")
        item.content = body
        book.add_item(item)
        items.append(item)
    book.toc = items
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *items]
    epub.write_epub(str(path), book)
    return chapters


def test_epub_is_one_document_per_chapter_with_headings(data_dir, tmp_path):
    chapters = write_epub(tmp_path / "walking.epub")
    result = fetch(tmp_path / "walking.epub")
    assert result.returncode == 0, result.stderr
    docs = corpus(data_dir)
    assert [doc["title"] for doc in docs] == [
        "Walking Home — Rivers",
        "Walking Home — Bread",
        "Walking Home — Chapter 3",
    ]
    assert all(doc["date"] == "2019-06-01" for doc in docs)
    rivers, bread, ending = (doc["content"] for doc in docs)
    assert rivers == (
        "# Rivers\n\nHerons wait in the reeds.\n\nThe water runs brown after rain.\n\n"
        "- a flask of tea\n- boots that leak"
    )
    assert bread.startswith("# Bread\n\n## The starter\n\n")
    assert bread.endswith("1. Feed him flour.\n2. Wait a day.")
    assert ending == "An ending with no heading at all.\n\nJust two short paragraphs."
    for doc, body in zip(docs, chapters.values(), strict=True):  # every word, in order
        assert words(doc["content"]) == words(re.sub(r"<[^>]+>", " ", body))


def write_docx(path: Path, title: str | None, created: datetime | None) -> None:
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    if created:
        document.core_properties.created = created
    document.add_heading("Tools of the Trade", 1)
    document.add_paragraph("A good bench is worth more than a good saw.")
    document.add_heading("Sharpening", 2)
    document.add_paragraph("Sharpen before you start,\tnot when you are tired.")
    document.add_paragraph("A strop", style="List Bullet")
    document.add_paragraph("Two stones", style="List Bullet")
    document.add_paragraph("Soak the stone.", style="List Number")
    document.add_paragraph("Hold the angle.", style="List Number")
    table = document.add_table(rows=2, cols=2)
    for row, cells in enumerate([("Tool", "Cost"), ("Chisel", "twelve pounds")]):
        for column, text in enumerate(cells):
            table.cell(row, column).text = text
    document.add_paragraph("The end of the notes.")
    document.save(str(path))


DOCX_CONTENT = (
    "# Tools of the Trade\n\nA good bench is worth more than a good saw.\n\n## Sharpening\n\n"
    "Sharpen before you start, not when you are tired.\n\n- A strop\n- Two stones\n"
    "1. Soak the stone.\n2. Hold the angle.\n\nTool | Cost\nChisel | twelve pounds\n\n"
    "The end of the notes."
)


def test_docx_is_one_document_with_markdown_headings_and_lists(data_dir, tmp_path):
    created = datetime(2022, 2, 3, 9, 0, tzinfo=UTC)
    write_docx(tmp_path / "workshop.docx", "Workshop Notes", created)
    write_docx(tmp_path / "2020-01-02-untitled.docx", None, None)  # python-docx's defaults
    result = fetch(tmp_path / "workshop.docx")
    assert result.returncode == 0, result.stderr
    (doc,) = corpus(data_dir)
    assert (doc["title"], doc["date"], doc["link"]) == ("Workshop Notes", "2022-02-03", "")
    assert doc["content"] == DOCX_CONTENT
    assert "pages" not in doc

    assert fetch(tmp_path / "2020-01-02-untitled.docx").returncode == 0
    # Same text, so the same document: already in the corpus.
    assert len(corpus(data_dir)) == 1
    from raft.sources.word import docx_documents

    (untitled,) = docx_documents(tmp_path / "2020-01-02-untitled.docx", "here")
    # No title: the first heading. The template's creation time is no date: the file name's.
    assert (untitled.title, untitled.date) == ("Tools of the Trade", "2020-01-02")


def test_damaged_documents_are_reported_and_the_rest_fetched(data_dir, tmp_path):
    from pypdf import PdfWriter

    folder = tmp_path / "writing"
    folder.mkdir()
    noise = random.Random(7)
    for name in ("broken.pdf", "broken.epub", "broken.docx"):
        (folder / name).write_bytes(noise.randbytes(4000))
    write_pdf(tmp_path / "plain.pdf", PDF_PAGES[:1])
    locked = PdfWriter(clone_from=tmp_path / "plain.pdf")
    locked.encrypt("secret", algorithm="RC4-128")
    locked.write(folder / "locked.pdf")
    write_pdf(folder / "scanned.pdf", [[], []])  # pages without a text layer
    write_docx(folder / "good.docx", "Good", None)
    result = fetch(folder)
    assert result.returncode == 0, result.stderr  # as for any fetch that got something
    assert "1 new" in result.stdout and "5 failed" in result.stdout
    assert [doc["title"] for doc in corpus(data_dir)] == ["Good"]
    warnings = dict(
        line.removeprefix("raft: warning: ").split(": ", 1)
        for line in result.stderr.splitlines()
        if line.startswith("raft: warning: ")
    )
    assert warnings.keys() == {
        str(folder / name)
        for name in ("broken.pdf", "broken.epub", "broken.docx", "locked.pdf", "scanned.pdf")
    }
    assert warnings[str(folder / "broken.pdf")].startswith("not a readable PDF")
    assert warnings[str(folder / "broken.epub")].startswith("not a readable EPUB")
    assert warnings[str(folder / "broken.docx")].startswith("not a readable DOCX")
    assert "password" in warnings[str(folder / "locked.pdf")]
    assert "no extractable text" in warnings[str(folder / "scanned.pdf")]
    assert "Traceback" not in result.stderr


def test_corpus_row_of_a_pdf_round_trips_through_json(tmp_path):
    from raft.sources.pdf import pdf_documents

    (doc,) = pdf_documents(write_pdf(tmp_path / "a.pdf", PDF_PAGES), "here")
    row = json.loads(json.dumps(doc.row()))
    assert row["pages"] == list(doc.pages) and len(row["pages"]) == 3
    assert [chunk.pages for chunk in chunk_document(row, 512, 0)] == [(1, 3)]
