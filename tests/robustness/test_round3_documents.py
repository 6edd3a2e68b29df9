"""Round 3 (issue 26), documents: every input file of `raft fetch` has one budget for the
whole file (text, what its parts decode to, parts, wall time), so decompression bombs, page
bombs and paragraph bombs are refused in one line naming the file while the rest of the
fetch is read; deeply nested JSON is one line per file; links out of a folder are not read.

The bombs keep their shape from the issue; each fetch runs in a fresh parent that reports
the peak memory of its one child and kills it after LIMIT seconds (the readers before the
budget took minutes and gigabytes on them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from raft.files import read_jsonl
from tests.helpers import BIN, run_cli
from tests.test_social import THREAD, write_x_archive

LIMIT = 60  # seconds; every refusal below takes about a second
MB = 1 << 20
ESSAY = "A plain essay, read whatever happens to the files beside it."

# What one `raft fetch`, run by a fresh Python, reports: the child's peak RSS, in kB.
_MEASURED = """
import resource, subprocess, sys
try:
    code = subprocess.run(sys.argv[2:], timeout=float(sys.argv[1])).returncode
except subprocess.TimeoutExpired:  # killed
    code = 124
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def fetch(
    *sources: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """`raft fetch author --from S ...`, and the peak memory of that process in MB."""
    args = [arg for source in sources for arg in ("--from", str(source))]
    command = [str(BIN / "raft"), "fetch", "author", *args]
    result = subprocess.run(
        [sys.executable, "-c", _MEASURED, str(LIMIT), *command],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=LIMIT + 30,
    )
    assert result.returncode != 124, f"raft fetch still running after {LIMIT} s"
    *lines, peak = result.stderr.rstrip("\n").split("\n")
    result.stderr = "\n".join(lines)
    return result, int(peak) / 1024


def corpus(data_dir: Path) -> list[dict]:
    path = data_dir / "author" / "corpus.jsonl"
    return list(read_jsonl(path)) if path.exists() else []


def warnings(stderr: str) -> dict[str, str]:
    """The fetch's warning lines, by the file they name."""
    found = {}
    for line in stderr.splitlines():
        if line.startswith("raft: warning: "):
            where, _, reason = line.removeprefix("raft: warning: ").partition(": ")
            found[where] = reason
    return found


@pytest.fixture
def essay(tmp_path: Path) -> Path:
    path = tmp_path / "essay.md"
    path.write_text(f"# Essay\n\n{ESSAY}\n")
    return path


# -- hostile files, made here ----------------------------------------------------------------

CONTAINER = (
    '<?xml version="1.0"?><container version="1.0" '
    'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
    '<rootfile full-path="OEBPS/book.opf" media-type="application/oebps-package+xml"/>'
    "</rootfiles></container>"
)


def write_epub(path: Path, chapters: dict[str, object]) -> Path:
    """An EPUB whose chapters are given as markup (str) or as an iterable of byte blocks,
    streamed into the archive so a huge chapter costs no memory to write."""
    items = "".join(
        f'<item id="{name}" href="{name}.xhtml" media-type="application/xhtml+xml"/>'
        for name in chapters
    )
    spine = "".join(f'<itemref idref="{name}"/>' for name in chapters)
    opf = (
        '<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" '
        'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:identifier id="id">urn:round3</dc:identifier><dc:title>Book</dc:title>'
        f"<dc:language>en</dc:language></metadata><manifest>{items}</manifest>"
        f"<spine>{spine}</spine></package>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", CONTAINER)
        archive.writestr("OEBPS/book.opf", opf)
        for name, body in chapters.items():
            with archive.open(f"OEBPS/{name}.xhtml", "w", force_zip64=True) as member:
                member.write(b'<html xmlns="http://www.w3.org/1999/xhtml"><body>')
                for block in [body.encode()] if isinstance(body, str) else body:
                    member.write(block)
                member.write(b"</body></html>")
    return path


def chapter_blocks(megabytes: int) -> object:
    """`megabytes` MB of `<p>` paragraphs, a MB at a time."""
    block = (b"<p>" + b"word " * 200 + b"</p>\n") * (MB // 1008)
    return (block for _ in range(megabytes))


def write_pdf(path: Path, pages: int, content: bytes, form: bytes | None = None) -> Path:
    """A PDF of `pages` pages that all draw the one compressed `content` stream; with
    `form`, the stream may invoke it as the form XObject /X."""
    resources = "<< /Font << /F1 4 0 R >> /XObject << /X 5 0 R >> >>"
    stream = zlib.compress(content, 9)
    form_stream = zlib.compress(form or b"", 9)
    kids = " ".join(f"{6 + n} 0 R" for n in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font << /F1 4 0 R"
        b" >> >> /Length %d /Filter /FlateDecode >>\nstream\n"
        % len(form_stream)
        + form_stream
        + b"\nendstream",
    ]
    page = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R "
    objects += [f"{page}/Resources {resources} >>".encode()] * pages
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    path.write_bytes(bytes(out))
    return path


def text_lines(megabytes: float) -> bytes:
    """A content stream of `megabytes` MB that shows one word a line."""
    line = b"BT /F1 12 Tf 72 700 Td (word) Tj ET\n"
    return line * int(megabytes * MB / len(line))


def write_docx(path: Path, paragraphs: int, media_mb: int = 0) -> Path:
    """python-docx's own template with `paragraphs` one-letter paragraphs as its body, and
    with `media_mb`, an image member of that many MB of zeros (declared, not stored)."""
    import io

    import docx

    template = io.BytesIO()
    docx.Document().save(template)
    with (
        zipfile.ZipFile(template) as source,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out,
    ):
        for info in source.infolist():
            if info.filename != "word/document.xml":
                out.writestr(info, source.read(info.filename))
                continue
            head = source.read(info.filename).partition(b"<w:body>")[0]
            with out.open("word/document.xml", "w", force_zip64=True) as member:
                member.write(head + b"<w:body>")
                paragraph = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>"
                for start in range(0, paragraphs, 10_000):
                    member.write(paragraph * min(10_000, paragraphs - start))
                member.write(b"<w:sectPr/></w:body></w:document>")
        if media_mb:
            with out.open("word/media/image1.png", "w", force_zip64=True) as member:
                for _ in range(media_mb):
                    member.write(bytes(MB))
    return path


# -- 1. EPUB decompression bomb --------------------------------------------------------------


def test_an_epub_bomb_is_refused_before_it_is_inflated(data_dir, tmp_path, essay):
    """One chapter that inflates to 128 MB (a few hundred kB zipped) is past the default
    100 MB budget on what a file decodes to: it is refused from its declared size, so the
    fetch never holds it, and the essay beside it is read."""
    bomb = write_epub(tmp_path / "bomb.epub", {"c1": chapter_blocks(128)})
    assert bomb.stat().st_size < 2 * MB

    result, peak_mb = fetch(bomb, essay)
    assert result.returncode == 0, result.stderr
    assert "1 new" in result.stdout and "1 failed" in result.stdout
    reason = warnings(result.stderr)[str(bomb)]
    assert "decodes to more than 100 MB" in reason and "RAFT_MAX_FILE_DECODED_MB" in reason
    assert peak_mb < 150, peak_mb  # the chapter alone is 128 MB
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY]

    alone, _ = fetch(bomb)  # the only source, a local file: exit 2, nothing written
    assert alone.returncode == 2 and "nothing fetched" in alone.stderr
    assert "Traceback" not in alone.stderr + result.stderr


def test_the_text_budget_holds_for_the_whole_book_and_nothing_is_half_written(
    data_dir, tmp_path, essay
):
    """Three chapters of 40 kB each, under a 0.1 MB text budget: each chapter fits, the book
    does not, and no chapter of it reaches the corpus."""
    chapter = "<p>" + "word " * 8_000 + "</p>"
    book = write_epub(tmp_path / "book.epub", {"c1": chapter, "c2": chapter, "c3": chapter})
    result, _ = fetch(book, essay, env={"RAFT_MAX_FILE_TEXT_MB": "0.1"})
    assert result.returncode == 0, result.stderr
    reason = warnings(result.stderr)[str(book)]
    assert "more than 0.1 MB of text" in reason and "RAFT_MAX_FILE_TEXT_MB" in reason
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY]


# -- 2. PDF page bomb ------------------------------------------------------------------------


def test_a_pdf_whose_pages_share_one_stream_is_refused_across_its_pages(data_dir, tmp_path, essay):
    """The issue's bomb: 20 pages drawing one stream that inflates to 8 MB (a few tens of kB
    on disk). Each page is within pypdf's limits; the file decodes to 160 MB, so it is
    refused before any page is parsed, instead of after minutes."""
    bomb = write_pdf(tmp_path / "pages.pdf", 20, text_lines(8))
    assert bomb.stat().st_size < 100_000
    result, _ = fetch(bomb, essay)
    assert result.returncode == 0, result.stderr
    reason = warnings(result.stderr)[str(bomb)]
    assert "decodes to more than 100 MB" in reason and "RAFT_MAX_FILE_DECODED_MB" in reason
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY]


def test_one_page_that_draws_a_form_a_thousand_times_runs_out_of_time(data_dir, tmp_path, essay):
    """One page may invoke a form XObject thousands of times, each parsed anew: the wall-time
    budget (here 2 s) stops it within the page."""
    form = text_lines(0.05)
    bomb = write_pdf(tmp_path / "form.pdf", 1, b"/X Do\n" * 1_000, form=form)
    result, _ = fetch(bomb, essay, env={"RAFT_MAX_FILE_SECONDS": "2"})
    assert result.returncode == 0, result.stderr
    reason = warnings(result.stderr)[str(bomb)]
    assert "still unread after 2 s" in reason and "RAFT_MAX_FILE_SECONDS" in reason
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY]


# -- 3. DOCX of millions of tiny paragraphs --------------------------------------------------


def test_a_docx_of_a_million_paragraphs_is_refused_fast_and_small(data_dir, tmp_path, essay):
    """A million one-letter paragraphs (about 100 kB zipped) are past the default budget of
    200,000 parts, counted by streaming the XML before python-docx builds its tree; an image
    that declares 128 MB is past the decoded budget before it is read."""
    folder = tmp_path / "docs"
    folder.mkdir()
    tiny = write_docx(folder / "tiny.docx", 1_000_000)
    image = write_docx(folder / "image.docx", 10, media_mb=128)
    assert tiny.stat().st_size < MB and image.stat().st_size < MB
    (folder / "essay.md").write_text(essay.read_text())

    result, peak_mb = fetch(folder)
    assert result.returncode == 0, result.stderr
    assert "1 new" in result.stdout and "2 failed" in result.stdout
    found = warnings(result.stderr)
    assert "more than 200000 paragraphs and table rows" in found[str(tiny)]
    assert "RAFT_MAX_FILE_PARTS" in found[str(tiny)]
    assert "RAFT_MAX_FILE_DECODED_MB" in found[str(image)]
    assert peak_mb < 150, peak_mb
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RAFT_MAX_FILE_TEXT_MB", "abc"),
        ("RAFT_MAX_FILE_DECODED_MB", "0"),
        ("RAFT_MAX_FILE_PARTS", "-5"),
        ("RAFT_MAX_FILE_SECONDS", "nan"),
        ("RAFT_MAX_FILE_TEXT_MB", "inf"),
    ],
)
def test_a_bad_budget_is_a_usage_error(data_dir, essay, variable, value):
    result = run_cli("raft", "fetch", "author", "--from", str(essay), env={variable: value})
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip() == f"raft: error: {variable} must be a positive number, not {value!r}"
    )
    assert not (data_dir / "author" / "corpus.jsonl").exists()


# -- 9. Deep JSON nesting --------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_is_one_line_per_file_and_the_folder_goes_on(data_dir, tmp_path):
    """tweets.js, outbox.json, a corpus .jsonl line and Markdown front matter nested 100,000
    deep: each file is named in one line and everything else in the folder is read; an X
    archive whose account.js is nested so deep is read without it."""
    folder = tmp_path / "exports"
    (folder / "x1" / "data").mkdir(parents=True)
    (folder / "x1" / "data" / "tweets.js").write_text(f"window.YTD.tweets.part0 = {DEEP}")
    archive = write_x_archive(folder / "x2")
    (archive / "data" / "account.js").write_text(f"window.YTD.account.part0 = {DEEP}")
    (folder / "mastodon").mkdir()
    (folder / "mastodon" / "outbox.json").write_text(DEEP)
    good_row = json.dumps({"title": "Old post", "content": "A post from the old corpus."})
    (folder / "old.jsonl").write_text(f'{{"content": {DEEP}}}\n{good_row}\n')
    (folder / "notes.md").write_text(f"---\ntitle: {DEEP}\n---\nNotes under deep front matter.\n")

    result = run_cli("raft", "fetch", "author", "--from", str(folder))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    found = warnings(result.stderr)
    assert found == {
        str(
            folder / "x1" / "data" / "tweets.js"
        ): "not an X archive tweets file: nested too deeply",
        str(folder / "mastodon" / "outbox.json"): "not JSON: nested too deeply",
        f"{folder / 'old.jsonl'}:1": "JSON nested too deeply",
    }
    contents = [doc["content"] for doc in corpus(data_dir)]
    assert "A post from the old corpus." in contents
    assert "\n\n".join(THREAD) in contents  # the X archive, read without its account.js
    assert any(content.endswith("Notes under deep front matter.") for content in contents)


def test_a_deep_line_in_the_personas_own_corpus_is_named(data_dir, essay):
    assert run_cli("raft", "fetch", "author", "--from", str(essay)).returncode == 0
    with open(data_dir / "author" / "corpus.jsonl", "a") as handle:
        handle.write(DEEP + "\n")
    result = run_cli("raft", "fetch", "author", "--from", str(essay))
    assert result.returncode == 1
    corpus_file = data_dir / "author" / "corpus.jsonl"
    assert result.stderr.strip().splitlines()[-1] == (
        f"raft: error: {corpus_file}:2: not valid JSON (nested too deeply)"
    )


# -- 11. Links out of a --from folder --------------------------------------------------------


def test_a_link_out_of_a_folder_is_not_read_but_a_linked_file_given_directly_is(
    data_dir, tmp_path, essay
):
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "diary.md").write_text("# Diary\n\nNot for the corpus.\n")
    folder = tmp_path / "writing"
    folder.mkdir()
    (folder / "essay.md").write_text(essay.read_text())
    (folder / "diary.md").symlink_to(outside / "diary.md")
    (folder / "again.md").symlink_to(folder / "essay.md")  # a link inside the folder is fine

    result = run_cli("raft", "fetch", "author", "--from", str(folder))
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == {
        str(
            folder / "diary.md"
        ): f"a link to {(outside / 'diary.md').resolve()}, outside {folder}: not read"
    }
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY]

    result = run_cli("raft", "fetch", "author", "--from", str(folder / "diary.md"))
    assert result.returncode == 0, result.stderr
    assert [doc["content"] for doc in corpus(data_dir)] == [ESSAY, "Not for the corpus."]


def test_a_tweets_part_linked_from_outside_adds_nothing_to_a_thread(data_dir, tmp_path):
    """The last tweet of a thread is in `tweets-part1.js`; linked in from elsewhere, it is
    named and left out, and the thread ends before it."""
    archive = write_x_archive(tmp_path / "x")
    part = archive / "data" / "tweets-part1.js"
    elsewhere = tmp_path / "elsewhere.js"
    part.rename(elsewhere)
    part.symlink_to(elsewhere)

    result = run_cli("raft", "fetch", "author", "--from", str(archive))
    assert result.returncode == 0, result.stderr
    assert list(warnings(result.stderr)) == [str(part)]
    contents = [doc["content"] for doc in corpus(data_dir)]
    assert "\n\n".join(THREAD[:2]) in contents
    assert not any(THREAD[2] in content for content in contents)


# -- Low: a Bluesky export with part of its tree missing -------------------------------------


def test_a_bluesky_export_missing_a_subtree_says_so(data_dir, tmp_path):
    """A partial export whose left subtree is missing: the posts that are there are read, and
    a warning names the file and how much of the tree was missing."""
    from tests.test_social import DID, Repo, post_record

    repo = Repo()
    keys = ["app.bsky.feed.post/3kaaaaaaaaa22", "app.bsky.feed.post/3kbbbbbbbbb22"]
    cids = [repo.put(post_record(text, "2023-03-05T07:10:00.000Z")) for text in THREAD[:2]]
    left = repo.mst_node([(keys[0], cids[0], None)])
    root = repo.mst_node([(keys[1], cids[1], None)], left=left)
    commit = repo.put({"did": DID, "version": 3, "data": root, "rev": "3k", "prev": None})
    del repo.blocks[left]
    car = tmp_path / "repo.car"
    car.write_bytes(repo.car(commit))

    result = run_cli("raft", "fetch", "author", "--from", str(car))
    assert result.returncode == 0, result.stderr
    assert warnings(result.stderr) == {
        str(car): "left out the posts under 1 missing repository tree node"
    }
    assert [doc["content"] for doc in corpus(data_dir)] == [THREAD[1]]
