"""Issue 27, the corpus side of importing real files: posts that repeat their text are each
kept (known by their link; only a document without one is known by its text), a fetch or
import that fails writes nothing, and every bad input is refused with exit 2, naming it.

The archives are written here in the shapes X, Mastodon and Bluesky export."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from raft.files import read_jsonl
from tests.helpers import run_cli
from tests.test_social import ACTOR, DID, OWN_ID, USERNAME, Repo, create, post_record, tweet
from tests.tiny_persona import write_tiny_persona

OK_HAND = "👌🏼"


def fetch(*args: str, env: dict[str, str] | None = None):
    return run_cli("raft", "fetch", "author", *args, env=env)


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raft: error: "), result.stderr
    return lines[0]


def refused_fetch(result, source: str, code: int = 2) -> list[str]:
    """The warnings of a fetch that read nothing; its error names the source and exit code."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()  # the progress line too, where it is shown
    assert lines[-1] == f"raft: error: {source}: nothing fetched; the corpus is unchanged"
    return [line for line in lines if line.startswith("raft: warning: ")]


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under the folder but the lock (any command leaves it), with its bytes."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock")
    return {str(p.relative_to(folder)): p.read_bytes() for p in files}


# -- posts that repeat -----------------------------------------------------------------------


def write_x_archive(root: Path) -> Path:
    """Two replies of one emoji to other people, a weekly photo captioned the same, and the
    same word posted twice: each tweet has its own id, so its own link."""
    data = root / "data"
    data.mkdir(parents=True)
    account = [{"account": {"accountId": OWN_ID, "username": USERNAME}}]
    (data / "account.js").write_text(f"window.YTD.account.part0 = {json.dumps(account)}")

    def reply(id_str: str, to: str, when: str) -> dict:
        return tweet(
            id_str,
            f"@{to} {OK_HAND}",
            when,
            in_reply_to_status_id_str=f"9{id_str}",
            in_reply_to_user_id_str="555",
            in_reply_to_screen_name=to,
        )

    def caturday(id_str: str, when: str) -> dict:
        photo = f"https://t.co/Cat{id_str}"
        return tweet(id_str, f"#caturday {photo}", when, entities={"media": [{"url": photo}]})

    rows = [
        reply("2006", "tom_reed", "Sat Jun 09 06:10:00 +0000 2018"),
        reply("2005", "jo_bakes", "Fri Jun 08 06:10:00 +0000 2018"),
        caturday("2004", "Sat Jun 02 09:00:00 +0000 2018"),
        caturday("2003", "Sat May 26 09:00:00 +0000 2018"),
        tweet("2002", "Test", "Tue May 01 18:31:00 +0000 2018"),
        tweet("2001", "Test", "Tue May 01 18:30:00 +0000 2018"),
    ]
    (data / "tweets.js").write_text(f"window.YTD.tweets.part0 = {json.dumps(rows, indent=2)}")
    return root


def write_outbox(path: Path) -> Path:
    items = [
        create(1, "<p>#caturday</p>", "2022-05-07T09:00:00Z"),
        create(2, "<p>#caturday</p>", "2022-05-14T09:00:00Z"),
        create(
            3,
            f"<p>{OK_HAND}</p>",
            "2022-05-15T09:00:00Z",
            reply="https://other.example/users/tom/statuses/10",
        ),
    ]
    outbox = {"id": f"{ACTOR}/outbox", "type": "OrderedCollection", "orderedItems": items}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outbox))
    return path


def write_bluesky_repo(path: Path) -> Path:
    repo = Repo()
    other = "at://did:plc:tomreed/app.bsky.feed.post/"
    records = {
        "app.bsky.feed.post/3kaaaaaaaaa22": post_record("Test", "2023-03-05T07:10:00.000Z"),
        "app.bsky.feed.post/3kbbbbbbbbb22": post_record("Test", "2023-03-06T07:10:00.000Z"),
        "app.bsky.feed.post/3kccccccccc22": post_record(
            OK_HAND, "2023-03-07T07:10:00.000Z", parent=other + "3kzzzzzzzzz22"
        ),
        "app.bsky.feed.post/3kddddddddd22": post_record(
            OK_HAND, "2023-03-08T07:10:00.000Z", parent=other + "3kyyyyyyyyy22"
        ),
    }
    cids = {key: repo.put(record) for key, record in records.items()}
    root = repo.mst_node([(key, cids[key], None) for key in sorted(cids)])
    commit = repo.put(
        {"did": DID, "version": 3, "data": root, "rev": "3kfffff", "prev": None, "sig": b"s"}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(repo.car(commit))
    return path


def x_link(tweet_id: str) -> str:
    return f"https://x.com/{USERNAME}/status/{tweet_id}"


def bsky_link(rkey: str) -> str:
    return f"https://bsky.app/profile/{DID}/post/{rkey}"


REPEATED = {  # link -> (date, content), word for word
    x_link("2001"): ("2018-05-01", "Test"),
    x_link("2002"): ("2018-05-01", "Test"),
    x_link("2003"): ("2018-05-26", "#caturday"),
    x_link("2004"): ("2018-06-02", "#caturday"),
    x_link("2005"): ("2018-06-08", OK_HAND),
    x_link("2006"): ("2018-06-09", OK_HAND),
    "https://social.example/@lena/1": ("2022-05-07", "#caturday"),
    "https://social.example/@lena/2": ("2022-05-14", "#caturday"),
    "https://social.example/@lena/3": ("2022-05-15", OK_HAND),
    bsky_link("3kaaaaaaaaa22"): ("2023-03-05", "Test"),
    bsky_link("3kbbbbbbbbb22"): ("2023-03-06", "Test"),
    bsky_link("3kccccccccc22"): ("2023-03-07", OK_HAND),
    bsky_link("3kddddddddd22"): ("2023-03-08", OK_HAND),
}


def test_posts_with_the_same_text_and_their_own_links_are_each_kept(data_dir, tmp_path):
    notes = tmp_path / "notes"  # no links: known by their text, so the copy is one document
    notes.mkdir()
    (notes / "2024-01-01-fishing.txt").write_text("Gone fishing.\n")
    (notes / "2024-01-02-fishing-copy.txt").write_text("Gone fishing.\n")
    sources = [
        write_x_archive(tmp_path / "x"),
        write_outbox(tmp_path / "mastodon" / "outbox.json"),
        write_bluesky_repo(tmp_path / "bsky" / "repo.car"),
        notes,
    ]
    first = fetch(*(arg for source in sources for arg in ("--from", str(source))))
    assert first.returncode == 0, first.stderr
    assert (
        "fetch author: 14 new, 1 already in the corpus (0 by link, 1 by text), "
        "0 paywalled (teaser only), 0 failed" in first.stdout
    )
    corpus = data_dir / "author" / "corpus.jsonl"
    docs = {(d["link"] or d["title"]): d for d in read_jsonl(corpus)}
    assert {link: (d["date"], d["content"]) for link, d in docs.items()} == {
        **REPEATED,
        "2024-01-01-fishing": ("2024-01-01", "Gone fishing."),
    }
    assert len({d["id"] for d in docs.values()}) == 14

    # A refresh finds every post again, by its link, and the notes by their text.
    before = corpus.read_bytes()
    again = fetch()
    assert again.returncode == 0, again.stderr
    assert "fetch author: 0 new, 15 already in the corpus (13 by link, 2 by text)" in again.stdout
    assert corpus.read_bytes() == before


def test_a_scrubbed_post_is_known_by_its_link_as_fetched(data_dir, tmp_path):
    secret = "tk_4f9a2c7e1b"
    rows = [
        ("One", f"https://lena.example.com/p/one?token={secret}", "Test"),
        ("Two", "https://lena.example.com/p/two", "Test"),
    ]
    export = tmp_path / "export.jsonl"
    export.write_text(
        "".join(
            json.dumps({"title": t, "link": link, "date": "2022-01-01", "content": c}) + "\n"
            for t, link, c in rows
        )
    )
    scrubbed = fetch("--from", str(export), "--scrub")
    assert scrubbed.returncode == 0, scrubbed.stderr
    assert "fetch author: 2 new, 0 already in the corpus, " in scrubbed.stdout
    corpus = data_dir / "author" / "corpus.jsonl"
    assert secret not in corpus.read_text()
    assert [(d["link"], d["content"]) for d in read_jsonl(corpus)] == [
        ("https://lena.example.com/p/one?token=[token]", "Test"),
        ("https://lena.example.com/p/two", "Test"),
    ]

    # With scrubbing turned off again, the posts as fetched are still the ones it holds.
    config = data_dir / "author" / "persona.toml"
    assert tomllib.loads(config.read_text())["scrub"] is True
    config.write_text(config.read_text().replace("scrub = true", ""))
    before = corpus.read_bytes()
    plain = fetch("--from", str(export))
    assert plain.returncode == 0, plain.stderr
    assert "fetch author: 0 new, 2 already in the corpus (2 by link, 0 by text)" in plain.stdout
    assert corpus.read_bytes() == before


# -- a fetch or import that fails writes nothing ---------------------------------------------


def test_a_failed_fetch_of_a_new_persona_leaves_no_folder(data_dir, tmp_path):
    broken = tmp_path / "book.pdf"
    broken.write_bytes(b"%PDF-1.7\nnot really a PDF")
    [warning] = refused_fetch(fetch("--from", str(broken), "--scrub"), str(broken))
    assert warning.startswith(f"raft: warning: {broken}: ")
    assert list(data_dir.iterdir()) == []  # no folder, no lock, no persona.toml


def test_a_failed_fetch_writes_no_file_and_keeps_persona_toml(data_dir, tmp_path):
    persona = data_dir / "author"
    persona.mkdir()
    (persona / "persona.toml").write_text('name = "Lena Marsh"  # who she is\n')
    before = listing(persona)
    exports = tmp_path / "exports"  # archives and documents that are all damaged
    (exports / "x" / "data").mkdir(parents=True)
    (exports / "x" / "data" / "tweets.js").write_text('window.YTD.tweets.part0 = [{"tw')
    (exports / "book.epub").write_bytes(b"PK\x03\x04 cut short")
    (exports / "notes.docx").write_bytes(b"not a zip")
    for args in (["--from", str(exports)], ["--from", str(exports), "--scrub"]):
        result = fetch(*args)
        warned = [
            line.removeprefix("raft: warning: ").split(": ")[0]
            for line in refused_fetch(result, str(exports))
        ]
        assert warned == [
            str(exports / "book.epub"),
            str(exports / "notes.docx"),
            str(exports / "x" / "data" / "tweets.js"),
        ]
        assert "3 failed" in result.stdout
        # No corpus.jsonl, persona.toml as it was: no `sources`, no `scrub`, its comment kept.
        assert listing(persona) == before, listing(persona)


def test_a_failed_import_writes_nothing_and_records_no_scrub(tmp_path):
    data = tmp_path / "data"
    persona = write_tiny_persona(data / "lena")
    env = {"RAFT_DATA_DIR": str(data)}
    before = listing(persona)
    broken = tmp_path / "talk.json"
    broken.write_text(json.dumps({"participants": {"q": "Mo", "a": "Lena Marsh"}}))
    result = run_cli("raft", "transcript:add", "lena", str(broken), "--scrub", env=env)
    assert one_line_error(result).startswith(f"raft: error: {broken}: bad date None")
    assert listing(persona) == before  # persona.toml without `scrub = true`

    # The training interview again, as held out: read, then refused before benchmark/ is even
    # made, and before --scrub is recorded.
    training = sorted((persona / "transcripts").glob("*.json"))[0]
    copy = tmp_path / "copy.json"
    copy.write_text(training.read_text())
    (persona / "benchmark").rename(tmp_path / "held-out")
    before = listing(persona)
    again = run_cli("raft", "transcript:add", "lena", str(copy), "--benchmark", "--scrub", env=env)
    line = one_line_error(again)
    assert line.startswith(f"raft: error: {copy} and {training} are the same interview")
    assert line.endswith("a held-out interview must not be trained on")
    assert listing(persona) == before and not (persona / "benchmark").exists()


# -- bad input: exit 2, naming it ------------------------------------------------------------


def test_every_bad_fetch_source_exits_2_naming_it(data_dir, tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    empty = tmp_path / "empty-folder"
    empty.mkdir()
    cases = {
        str(tmp_path / "absent.md"): "no such file or folder",
        "ftp://example.com/essays": "not an http(s) URL",
        str(latin1): "not UTF-8 text",
        str(empty): "a folder with no file to read",
    }
    for source, problem in cases.items():
        warnings = refused_fetch(fetch("--from", source), source)
        assert warnings == [f"raft: warning: {source}: {problem}"]
    assert list(data_dir.iterdir()) == []

    # A web source that fails is no fault of the command: exit 1.
    web = "http://127.0.0.1:9/essays"
    refused_fetch(fetch("--from", web, env={"RAFT_FETCH_RETRIES": "0"}), web, code=1)


def test_every_bad_transcript_source_exits_2_naming_it(tmp_path):
    data = tmp_path / "data"
    persona = write_tiny_persona(data / "lena")
    env = {"RAFT_DATA_DIR": str(data)}
    before = listing(persona)
    long = tmp_path / "long.txt"
    long.write_text(f"Mo: Why bees?\n\nLena Marsh: {'Because. ' * 25_001}\n")
    cases = {
        str(tmp_path / "absent.vtt"): "no such file",
        str(tmp_path): "a folder, not a file",
        "ftp://example.com/talk.vtt": "not a file or an http(s) URL",
        str(long): "exchange 1 is longer than 200,000 characters",
    }
    for source, problem in cases.items():
        result = run_cli("raft", "transcript:add", "lena", source, "--date", "2024-01-05", env=env)
        assert one_line_error(result).startswith(f"raft: error: {source}: {problem}")
    assert listing(persona) == before
