"""Personal data: `raft fetch --scrub` replaces it before the corpus is written, persona.toml's
`blocked_words` add names and places to hide, and `raft check` finds any left in finetune/."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from raft.errors import UsageError
from raft.paths import Persona
from raft.scrub import Scrubber, find_private, scrubber_for
from tests.helpers import run_cli
from tests.tiny_persona import write_finetune, write_tiny_persona

EMAIL, PHONE = "lena.marsh+hives@example.co.uk", "+44 20 7946 0958"
TOKEN = "eyJ1c2VyX2lkIjo0MiwiZXhwIjoxNzAwMDAwMDAwfQ"
UNSUBSCRIBE = f"https://lena.substack.com/action/disable_email?token={TOKEN}&utm_source=post"
FOOTER = (
    f"Questions about the hives? Write to {EMAIL} or ring me on {PHONE}; Jo Park at the "
    f"laundrette has the spare key.\n\nTo stop these letters, follow {UNSUBSCRIBE} and "
    "nothing more will come."
)
NATIONAL_PHONES = [
    "(555) 123-4567",
    "555-123-4567",
    "555.123.4567",
    "+1 (555) 123-4567",
    "020 7946 0958",
    "07700 900123",
    "01 23 45 67 89",
    "+33 1 23 45 67 89",
    "+4930123456",
]
NOT_PHONES = (
    "In 2023 I wrote 1,234 posts, the first on 2020-03-01, another on 06/01/2023 and on "
    "06.01.2023, between 1999-2004 and 12 March 2021. My book is ISBN 978-0-306-40615-7 "
    "(ISBN-10 0-306-40615-2, or 9780306406157). Honey was $1,234.56 a barrel, €12.50 or "
    "£9.00 a jar; 3.14159 and 1234567 and 5551234567 and 1 000 000 are only numbers, as are "
    "version 1.2.3, 192.168.1.1, pages 123-145, 10:30-11:45 and +3.5% on last year."
)


def test_the_scrubber_replaces_each_kind_of_personal_data_and_counts_it():
    scrubber = Scrubber(blocked_words=("jo park", "Mill  Street"))
    text = scrubber.scrub(FOOTER + " The hives sit above MILL STREET.")
    assert text == (
        "Questions about the hives? Write to [email] or ring me on [phone]; [blocked] at the "
        "laundrette has the spare key.\n\nTo stop these letters, follow "
        "https://lena.substack.com/action/disable_email?token=[token]&utm_source=post and "
        "nothing more will come. The hives sit above [blocked]."
    )
    assert scrubber.counts == Counter(email=1, phone=1, token=1, blocked=2)
    assert scrubber.scrub(text) == text  # scrubbed text has nothing left to scrub
    assert scrubber.counts == Counter(email=1, phone=1, token=1, blocked=2)


@pytest.mark.parametrize("number", NATIONAL_PHONES)
def test_phone_numbers_in_international_and_national_formats(number: str):
    assert Scrubber().scrub(f"Call {number} after six.") == "Call [phone] after six."


def test_years_dates_isbns_prices_and_plain_numbers_are_kept():
    scrubber = Scrubber()
    assert scrubber.scrub(NOT_PHONES) == NOT_PHONES
    assert not scrubber.counts


def test_only_personal_query_values_go_and_the_rest_of_the_url_stays():
    scrubber = Scrubber()
    text = (
        "See https://example.com/post?id=123&page=2 and "
        "https://files.example.com/a.pdf?X-Amz-Signature=deadbeef&X-Amz-Credential=AKIA1&v=2 "
        "and https://app.example.com/login?session=abc;lang=en#top. Or https://x.org/?key=k1."
    )
    assert scrubber.scrub(text) == (
        "See https://example.com/post?id=123&page=2 and "
        "https://files.example.com/a.pdf?X-Amz-Signature=[token]&X-Amz-Credential=[token]&v=2 "
        "and https://app.example.com/login?session=[token];lang=en#top. "
        "Or https://x.org/?key=[token]."
    )
    assert scrubber.counts == Counter(token=4)


def test_blocked_words_are_whole_words_in_any_case():
    scrubber = Scrubber(blocked_words=("Gerald",))
    assert scrubber.scrub("GERALD, Geraldine and gerald's jar") == (
        "[blocked], Geraldine and [blocked]'s jar"
    )


def test_find_private_names_the_kind_and_the_match():
    assert find_private(FOOTER, ["Jo Park"]) == [
        ("email", EMAIL),
        ("phone", PHONE),
        ("blocked", "Jo Park"),
        ("token", f"token={TOKEN}"),
    ]
    assert find_private(NOT_PHONES, []) == []


def test_blocked_words_come_from_persona_toml(tmp_path: Path):
    persona = Persona("lena", tmp_path / "lena")
    persona.root.mkdir()
    assert scrubber_for(persona).blocked_words == ()  # no persona.toml yet
    persona.config.write_text('name = "Lena Marsh"\nblocked_words = ["Jo Park", "Mill Street"]\n')
    assert scrubber_for(persona).scrub("Jo Park of Mill Street") == "[blocked] of [blocked]"
    for wrong in ('blocked_words = "Jo Park"', "blocked_words = [1, 2]"):
        persona.config.write_text(wrong + "\n")
        with pytest.raises(UsageError, match=r"persona\.toml: `blocked_words` must be a list"):
            scrubber_for(persona)


def test_fetch_scrub_writes_placeholders_and_none_of_the_originals(data_dir: Path):
    persona = write_tiny_persona(data_dir / "lena")
    config = persona / "persona.toml"
    config.write_text(config.read_text() + 'blocked_words = ["Jo Park", "Gerald"]\n')
    (persona / "essays" / "2022-12-01-letters.md").write_text(
        f"---\ntitle: Letters from Gerald\ndate: 2022-12-01\n---\n\n{FOOTER}\n"
    )

    result = run_cli("raft", "fetch", "lena", "--scrub")
    assert result.returncode == 0, result.stderr
    assert "fetch lena: 7 new" in result.stdout
    # Gerald, the sourdough starter, twice in his essay and once in a title; Jo Park once.
    assert (
        "scrubbed lena: 1 e-mail address, 1 phone number, 1 URL token, 4 blocked words replaced"
        in result.stdout
    )
    corpus = (persona / "corpus.jsonl").read_text()
    for secret in (EMAIL, PHONE, TOKEN, "Jo Park", "Gerald"):
        assert secret not in corpus
    [letters] = [json.loads(line) for line in corpus.splitlines() if "[email]" in line]
    assert letters["title"] == "Letters from [blocked]"
    assert "[phone]" in letters["content"] and "[blocked] at the laundrette" in letters["content"]
    assert "disable_email?token=[token]&utm_source=post" in letters["content"]

    # persona.toml keeps the choice: a later fetch without --scrub scrubs what is new, and
    # knows the letter by its text as fetched (no second, unscrubbed copy).
    assert "scrub = true" in config.read_text()
    (persona / "essays" / "2023-01-05-more.md").write_text("Gerald rose again, said Jo Park.\n")
    again = run_cli("raft", "fetch", "lena")
    assert again.returncode == 0, again.stderr
    assert "fetch lena: 1 new, 7 already in the corpus" in again.stdout
    assert "scrubbed lena: 2 blocked words replaced" in again.stdout
    corpus = (persona / "corpus.jsonl").read_text()
    assert EMAIL not in corpus and "Gerald" not in corpus
    assert "[blocked] rose again, said [blocked]." in corpus


def test_check_fails_on_personal_data_in_any_finetune_file(data_dir: Path):
    persona = write_tiny_persona(data_dir / "lena")
    finetune = write_finetune(persona)
    config = persona / "persona.toml"
    config.write_text(config.read_text() + 'blocked_words = ["Jo Park"]\n')
    passed = run_cli("raft", "check", "lena")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASS  no personal data in finetune/" in passed.stdout.splitlines()

    plain = finetune / "plain"
    plain.mkdir()
    rows = [{"messages": [{"role": "user", "content": "Where do the hives live?"}]}] * 2
    rows.append({"messages": [{"role": "assistant", "content": f"Jo Park\nknows; mail {EMAIL}"}]})
    (plain / "messages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    failed = run_cli("raft", "check", "lena")
    assert failed.returncode == 1
    assert "1 of 9 checks failed" in failed.stderr
    [line] = [line for line in failed.stdout.splitlines() if line.startswith("FAIL")]
    assert line.startswith(
        f"FAIL  no personal data in finetune/: {plain / 'messages.jsonl'}:3 has a blocked word "
        "(J… (7 characters)); 2 in all, in 1 file(s)"
    )
    assert "Jo Park" not in failed.stdout + failed.stderr
    assert EMAIL not in failed.stdout + failed.stderr

    (plain / "messages.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (finetune / "notes.txt").write_text(f"reviewed\nsee {UNSUBSCRIBE}\n")
    failed = run_cli("raft", "check", "lena")
    assert f"{finetune / 'notes.txt'}:2 has a personal token in a URL (token=…)" in failed.stdout
    assert TOKEN not in failed.stdout + failed.stderr


def test_a_paged_document_keeps_its_page_starts_when_scrubbed():
    from raft.corpus import scrub_document
    from raft.sources import Document

    pages = ["Page one, by Jo Park.\n", f"Page two: write to {EMAIL}.\n", "Page three.\n"]
    starts = (0, len(pages[0]), len(pages[0]) + len(pages[1]))  # where pages 1, 2, 3 start
    doc = Document("Notes", "", "2022-01-01", "".join(pages), "notes.pdf", pages=starts)
    scrubbed = scrub_document(doc, Scrubber(blocked_words=("Jo Park",)))
    content, (one, two, three) = scrubbed.content, scrubbed.pages
    assert one == 0
    assert content[:two] == "Page one, by [blocked].\n"
    assert content[two:three] == "Page two: write to [email].\n"
    assert content[three:] == "Page three.\n"
