"""`raft fetch` against real HTTP servers on 127.0.0.1 and local files."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
from pytest_httpserver import HTTPServer

from raft.files import read_jsonl
from tests.helpers import run_cli
from tests.sites import LONG_LINE, FakeSubstack, atom_feed, paragraphs, post_page, site_home


def corpus(data_dir, name="author"):
    return list(read_jsonl(data_dir / name / "corpus.jsonl"))


@pytest.fixture
def substack(httpserver: HTTPServer) -> FakeSubstack:
    site = FakeSubstack(httpserver.url_for("").rstrip("/"))
    httpserver.expect_request("/api/v1/archive").respond_with_handler(site)
    httpserver.expect_request(re.compile(r"^/p/")).respond_with_handler(site)
    return site


def test_substack_archive_is_fetched_completely(data_dir, substack):
    result = run_cli("raft", "fetch", "author", "--from", substack.base)
    assert result.returncode == 0, result.stderr
    assert "5 new" in result.stdout and "1 paywalled" in result.stdout
    docs = {d["link"]: d for d in corpus(data_dir)}
    assert set(docs) == {substack.url(slug) for slug, *_ in substack.posts}
    # The one-line post survives whole (the original tool kept its first 2,048 characters).
    assert docs[substack.url("one-line")]["content"] == LONG_LINE
    lamps = docs[substack.url("first-light")]
    assert lamps["content"] == "\n\n".join(paragraphs("Lamps"))  # paragraph breaks kept
    assert (lamps["title"], lamps["date"], lamps["paywalled"]) == (
        "First Light",
        "2021-03-04",
        False,
    )
    assert docs[substack.url("members")]["paywalled"] is True
    assert not any(d["paywalled"] for link, d in docs.items() if link != substack.url("members"))
    # Two posts titled "Notes" are two documents with different ids and texts.
    notes = [d for d in docs.values() if d["title"] == "Notes"]
    assert len({d["id"] for d in notes}) == 2 and notes[0]["content"] != notes[1]["content"]
    assert substack.archive_requests == 4  # pages of at most 2 posts, until an empty page
    config = tomllib.loads((data_dir / "author" / "persona.toml").read_text())
    assert config["sources"] == [substack.base]


def test_refetch_adds_nothing_and_requests_no_known_page(data_dir, substack):
    assert run_cli("raft", "fetch", "author", "--from", substack.base).returncode == 0
    before = (data_dir / "author" / "corpus.jsonl").read_bytes()
    pages = substack.page_requests
    result = run_cli("raft", "fetch", "author")  # the recorded source
    assert result.returncode == 0, result.stderr
    assert "0 new, 5 already in the corpus" in result.stdout
    assert (data_dir / "author" / "corpus.jsonl").read_bytes() == before
    assert substack.page_requests == pages


def test_new_post_is_appended_on_refetch(data_dir, substack):
    assert run_cli("raft", "fetch", "author", "--from", substack.base).returncode == 0
    substack.posts.insert(
        0, ("fresh", "Fresh", "2023-01-01T00:00:00Z", "everyone", paragraphs("News"))
    )
    pages = substack.page_requests
    result = run_cli("raft", "fetch", "author")
    assert result.returncode == 0, result.stderr
    assert "1 new, 5 already in the corpus" in result.stdout
    assert substack.page_requests == pages + 1  # only the new post's page
    assert corpus(data_dir)[-1]["title"] == "Fresh"


def test_atom_site_is_followed_to_its_feed_and_teasers_fetched_in_full(data_dir, httpserver):
    base = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/api/v1/archive").respond_with_data("no", status=404)
    httpserver.expect_request("/").respond_with_data(
        site_home("/feed.atom"), content_type="text/html"
    )
    httpserver.expect_request("/feed.atom").respond_with_data(
        atom_feed(base), content_type="application/atom+xml"
    )
    httpserver.expect_request("/posts/teaser").respond_with_data(
        post_page("Teaser Entry", paragraphs("Tides", 6)), content_type="text/html"
    )
    result = run_cli("raft", "fetch", "author", "--from", base + "/")
    assert result.returncode == 0, result.stderr
    docs = {d["title"]: d for d in corpus(data_dir)}
    assert docs["Full Entry"]["content"] == "\n\n".join(paragraphs("Harbours", 8))
    assert docs["Full Entry"]["date"] == "2023-01-05"
    assert docs["Teaser Entry"]["content"] == "\n\n".join(paragraphs("Tides", 6))
    assert docs["Teaser Entry"]["date"] == "2023-02-01"


def test_single_page(data_dir, httpserver):
    httpserver.expect_request("/essays/one").respond_with_data(
        post_page("One Essay", paragraphs("Bridges")), content_type="text/html"
    )
    result = run_cli("raft", "fetch", "author", "--from", httpserver.url_for("/essays/one"))
    assert result.returncode == 0, result.stderr
    (doc,) = corpus(data_dir)
    assert doc["title"] == "One Essay" and doc["content"] == "\n\n".join(paragraphs("Bridges"))
    assert doc["date"] == ""  # unknown stays empty, never today


def test_local_files_of_every_kind(data_dir, tmp_path):
    src = tmp_path / "writing"
    src.mkdir()
    (src / "2020-05-06-walls.md").write_text("# Walls\n\nStone walls last.\n\nMortar does not.\n")
    (src / "front.md").write_text(
        "---\ntitle: Front\ndate: 2019-01-02\nlink: https://x.example/f\n---\n\nBody.\n"
    )
    (src / "plain.txt").write_text("Just text.\n")
    (src / "page.html").write_text(post_page("Html Page", paragraphs("Roofs")))
    rows = [
        {
            "title": "Old",
            "link": "https://x.example/old",
            "date": "March 3, 2018",
            "content": "Old text.",
        }
    ]
    (src / "old.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (src / "copy.txt").write_text("Just text.\n")  # same text as plain.txt: one document
    result = run_cli("raft", "fetch", "author", "--from", str(src))
    assert result.returncode == 0, result.stderr
    docs = {d["title"]: d for d in corpus(data_dir)}
    assert docs["Walls"]["content"] == "Stone walls last.\n\nMortar does not."
    assert docs["Walls"]["date"] == "2020-05-06"
    assert (docs["Front"]["date"], docs["Front"]["link"]) == ("2019-01-02", "https://x.example/f")
    assert docs["Old"]["date"] == "2018-03-03"
    assert docs["Html Page"]["content"] == "\n\n".join(paragraphs("Roofs"))
    assert sum(d["content"] == "Just text." for d in docs.values()) == 1
    assert len(docs) == 5


def test_torn_last_line_from_a_killed_fetch_is_dropped(data_dir, tmp_path):
    src = tmp_path / "a.txt"
    src.write_text("Alpha.\n")
    assert run_cli("raft", "fetch", "author", "--from", str(src)).returncode == 0
    path = data_dir / "author" / "corpus.jsonl"
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"id": "half-writ')
    (tmp_path / "b.txt").write_text("Beta.\n")
    assert run_cli("raft", "fetch", "author", "--from", str(tmp_path / "b.txt")).returncode == 0
    assert [d["content"] for d in corpus(data_dir)] == ["Alpha.", "Beta."]
