"""Round 3, the scrubber that holds (issue 26, findings 7 and 8): personal data written in
disguise (a full-width @, "[at]", an IDN, a Cyrillic letter, a zero-width space, an en dash)
is scrubbed and found by `raft check` alike; links, urls and interviewer names are
scrubbed too, and `raft check` names the command that removes what it found."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from raft.scrub import Scrubber
from tests.helpers import run_cli
from tests.test_privacy import NOT_PHONES
from tests.tiny_persona import write_finetune, write_tiny_persona

BLOCKED = "Hartwell"
# (the form as written, what scrubbing leaves of it)
FORMS = [
    ("jo\uff20example.com", "[email]"),  # full-width @
    ("jo [at] example [dot] com", "[email]"),
    ("jo(at)example(dot)com", "[email]"),
    ("jo {AT} example.com", "[email]"),
    ("jo@ex\u00e4mple.com", "[email]"),  # IDN domain
    ("jo@ex\u0061\u0308mple.com", "[email]"),  # the same, with a combining diaeresis
    ("jo@\u4f8b\u3048.jp", "[email]"),  # 例え.jp
    ("jo@xn--exmple-cua.com", "[email]"),  # punycode
    ("_jo@example.com", "[email]"),
    ("+44\u00a020\u00a07946\u00a00958", "[phone]"),  # no-break spaces
    ("555\u2013123\u20134567", "[phone]"),  # en dashes
    ("+44 20 7946\n0958", "[phone]"),  # a line break where the text wrapped
    ("H\u0430rtwell", "[blocked]"),  # Cyrillic а
    ("HARTW\u0415LL", "[blocked]"),  # Cyrillic capital Е
    ("Hart\u200bwell", "[blocked]"),  # zero-width space
    ("Hart\u00adwell", "[blocked]"),  # soft hyphen
    ("Hart-well", "[blocked]"),
    (
        "https://app.example.com/cb#access_token=ya29.a0AfH6&state=42",
        "https://app.example.com/cb#access_token=[token]&state=42",
    ),
]
# The text around a form is kept byte for byte, even where normalising would change it.
AROUND = "Caf\u00e9 \ufb01ne \u2014 {} \u2014 na\u00efve."


@pytest.mark.parametrize(("form", "left"), FORMS, ids=[ascii(f)[1:-1][:40] for f, _ in FORMS])
def test_each_disguised_form_is_scrubbed_and_the_rest_kept(form: str, left: str):
    scrubber = Scrubber(blocked_words=(BLOCKED,))
    assert scrubber.scrub(AROUND.format(form)) == AROUND.format(left)
    assert sum(scrubber.counts.values()) == 1


ORDINARY = (
    "At the dot of noon on 2021\u201103\u201101 we met; look at example dot com, or meet me "
    "(at) noon. Opening times 10\u201312 and 14\u201318, 1999\u20132004, pages 123\u2013145. "
    "ISBN 978\u20130\u2013306\u201340615\u20137 costs \u00a312.50 or 1\u00a0234,56 \u20ac. "
    "Version 1.2.3 of the app, 192.168.1.1, build 2024.06.01. In rooms 101\n102\n103 the "
    "well\u2011known Hartwellian, Hartwells and \u0425\u0430\u0440\u0442 met at 10:30\u201311:45 "
    "for caf\u00e9 (\ufb01ne, na\u00efve)."
)


@pytest.mark.parametrize(
    "text",
    [ORDINARY, NOT_PHONES.replace("-", "\u2013").replace(" ", "\u00a0")],
    ids=["prose", "numbers-with-en-dashes-and-nbsp"],
)
def test_ordinary_text_is_not_scrubbed(text: str):
    scrubber = Scrubber(blocked_words=(BLOCKED,))
    assert scrubber.scrub(text) == text
    assert not scrubber.counts


def _blocked(persona: Path) -> None:
    config = persona / "persona.toml"
    config.write_text(config.read_text() + f'blocked_words = ["{BLOCKED}"]\n')


def _messages(folder: Path, contents: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "messages.jsonl"
    rows = [{"messages": [{"role": "assistant", "content": f"Write to {c}."}]} for c in contents]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _personal_data_line(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if "no personal data in finetune/" in line]
    return line


def test_check_finds_every_disguised_form_in_finetune(data_dir: Path):
    persona = write_tiny_persona(data_dir / "lena")
    _blocked(persona)
    path = _messages(write_finetune(persona) / "plain", [form for form, _ in FORMS])

    result = run_cli("raft", "check", "lena")
    assert result.returncode == 1
    line = _personal_data_line(result.stdout)
    assert line.startswith(f"FAIL  no personal data in finetune/: {path}:1 has an e-mail address")
    assert f"; {len(FORMS)} in all, in 1 file(s)" in line
    assert not any(form in result.stdout + result.stderr for form, _ in FORMS)


def test_fetch_scrub_scrubs_document_links_and_keeps_ids_stable(data_dir: Path, tmp_path: Path):
    secret, reader = "tk_4f9a2c7e1b", "jo.reader@example.com"
    export = tmp_path / "export.jsonl"
    rows = [
        ("One", f"https://lena.example.com/p/one?token={secret}", "Bees on the roof."),
        ("Two", f"https://lena.example.com/p/two?ref=mailto:{reader}&utm=x", "Slow bread."),
    ]
    export.write_text(
        "".join(
            json.dumps({"title": t, "link": link, "date": "2022-01-01", "content": c}) + "\n"
            for t, link, c in rows
        )
    )
    result = run_cli("raft", "fetch", "lena", "--from", str(export), "--scrub")
    assert result.returncode == 0, result.stderr
    assert "scrubbed lena: 1 e-mail address, 1 URL token replaced" in result.stdout
    corpus = data_dir / "lena" / "corpus.jsonl"
    assert secret not in corpus.read_text() and reader not in corpus.read_text()
    links = {row["link"]: row["id"] for row in map(json.loads, corpus.read_text().splitlines())}
    scrubbed = [
        "https://lena.example.com/p/one?token=[token]",
        "https://lena.example.com/p/two?ref=mailto:[email]&utm=x",
    ]
    assert list(links) == scrubbed
    # The id is made from the link as written, so it carries no token either.
    for link, doc_id in links.items():
        assert doc_id == hashlib.sha256(f"link:{link}".encode()).hexdigest()[:16]

    again = run_cli("raft", "fetch", "lena", "--from", str(export))
    assert again.returncode == 0, again.stderr
    assert "fetch lena: 0 new, 2 already in the corpus" in again.stdout
    assert len(corpus.read_text().splitlines()) == 2


def test_transcript_add_scrub_scrubs_the_url_and_the_names(data_dir: Path, tmp_path: Path):
    persona = write_tiny_persona(data_dir / "lena")
    _blocked(persona)
    secret = "tk_4f9a2c7e1b"
    source = tmp_path / "2021-08-01-hartwell-hour.json"
    source.write_text(
        json.dumps(
            {
                "participants": {"q": "Tom Hartwell", "a": "Lena Marsh"},
                "date": "2021-08-01",
                "url": f"https://radio.example.org/ep/3?session={secret}",
                "exchanges": [["Do the bees sting?", "Rarely, if you move slowly."]],
            }
        )
    )
    result = run_cli("raft", "transcript:add", "lena", str(source), "--scrub")
    assert result.returncode == 0, result.stderr
    assert "scrubbed lena: 1 URL token, 2 blocked words replaced" in result.stdout
    assert "speakers Tom [blocked] (q)" in result.stdout
    [written] = (persona / "transcripts").glob("2021-08-01-*.json")
    assert written.name == "2021-08-01-blocked-hour.json"  # the base names the sample ids
    data = json.loads(written.read_text())
    assert data["participants"] == {"q": "Tom [blocked]", "a": "Lena Marsh"}
    assert data["url"] == "https://radio.example.org/ep/3?session=[token]"
    assert secret not in written.read_text() and BLOCKED not in written.read_text()


def test_check_advice_names_the_command_for_each_place(data_dir: Path):
    persona = write_tiny_persona(data_dir / "lena")
    _blocked(persona)
    finetune = write_finetune(persona)
    # An interviewer named with a blocked word, an address only the corpus holds, and a
    # phone number that is in no source at all.
    transcript = persona / "transcripts" / "2021-06-01-garden-radio.json"
    data = json.loads(transcript.read_text())
    data["participants"]["q"] = "Tom Hartwell"
    transcript.write_text(json.dumps(data))
    row = {"id": "x", "title": "Hives", "link": "", "date": "2020-01-01", "source": "essays"}
    row["content"] = "Write to jo.reader@example.com."
    (persona / "corpus.jsonl").write_text(json.dumps(row) + "\n")
    _messages(finetune / "plain", ["Tom Hartwell", "jo.reader@example.com", "020 7946 0958"])

    result = run_cli("raft", "check", "lena")
    assert result.returncode == 1
    line = _personal_data_line(result.stdout)
    assert line.endswith(
        f"3 in all, in 1 file(s): it is in {transcript}: move the file out of "
        f"{persona / 'transcripts'} and add it again with `raft transcript:add lena FILE "
        f"--scrub` (or edit it); it is in the corpus: move {persona / 'corpus.jsonl'} aside "
        "(a fetch never rewrites a document it has), run `raft fetch lena --scrub`, "
        "`raft chunk lena` and `raft embed lena`; it is in no transcript or corpus file: "
        "edit or remove it in finetune/; then run `raft ft:gen lena`"
    )
