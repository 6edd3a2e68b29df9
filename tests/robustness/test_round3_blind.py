"""Round 3 of hardening, the blind test and the pages around it: a rater who knows their
token, the item ids and the system names cannot work out where the author's answer is;
rater ids that are not ASCII are refused, not a 500; raters, judgements and review marks
made at once by two servers are all kept once; review marks name real samples; and a
model's reply cannot write Markdown into `report.md`.

The persona is the tiny one with two held-out items and a run of two replicas' replies,
written as `ratf run` would (tests.test_human.scored_run): no model is loaded.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
import re
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from scipy.stats import binom

from raft.paths import Persona
from raft.web.blind import Blind, BlindItem, Rater, add_raters, load_raters
from ratf.human import AUTHOR, read_judgements
from tests.helpers import BIN, free_port, run_cli, wait_for_http
from tests.test_human import RUN, scored_run

SERVE = ["--no-memories", "--model", "openai:none@http://127.0.0.1:9/v1"]  # never called
SYSTEMS = ["base", "raft", "plain", "zeta", "aardvark", "lora-7", "gpt-4o", "oracle"]


@pytest.fixture
def lena(tmp_path: Path) -> tuple[Persona, dict[str, str]]:
    folder, env = scored_run(tmp_path / "data")
    return Persona("lena", folder.parent.parent.parent), env


@contextmanager
def serving(env: dict[str, str], log: Path, *args: str) -> Iterator[tuple[str, dict[str, str]]]:
    """`raft serve lena ARGS` on a free port, stderr in `log`; yields its URL and the
    rater links it printed (name -> token)."""
    port = free_port()
    with open(log, "a") as errors:
        process = subprocess.Popen(
            [str(BIN / "raft"), "serve", "lena", "--port", str(port), *SERVE, *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    tokens = {}
    try:
        if "--raters" in args:
            assert process.stdout.readline().startswith("blind test of run")
            for _ in range(int(args[args.index("--raters") + 1])):
                name, link = process.stdout.readline().strip().split(": ")
                tokens[name] = link.split("rater=")[1]
        wait_for_http(f"{url}/v1/models", process, timeout=60)
        yield url, tokens
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- 5: the order is keyed by a secret of the server -----------------------------------


def simulated_items(count: int) -> list[BlindItem]:
    """Items of three answers each (chance 1/3): the author's and two systems' replies,
    the systems drawn from names that sort before and after "author"."""
    draw = random.Random(5)
    items = []
    for n in range(count):
        systems = draw.sample(SYSTEMS, 2)
        answers = {label: f"reply {n} of {label}" for label in [AUTHOR, *systems]}
        items.append(BlindItem(f"2023-01-10-held-out-podcast#{n}", "Q?", [], answers))
    return items


def sha256_guess(token: str, item: BlindItem) -> int:
    """The finding's attack: the order seeded by sha256(token, item), the labels sorted."""
    labels = sorted(item.answers)
    random.Random(hashlib.sha256(f"{token}\0{item.id}".encode()).digest()).shuffle(labels)
    return labels.index(AUTHOR)


def label_sort_guess(token: str, item: BlindItem) -> int:
    """Where the author's answer would be if positions followed the labels' sort order."""
    return sorted(item.answers).index(AUTHOR)


ATTACKS = {
    "sha256 of token and item": sha256_guess,
    "always the first answer": lambda token, item: 0,
    "the author's place among the sorted labels": label_sort_guess,
}


def test_a_rater_who_knows_their_token_cannot_beat_chance(lena):
    persona, _ = lena
    human = persona.ratf / "human"
    human.mkdir(parents=True)
    # Fixed tokens and a fixed secret make the outcome the same on every run, so the 99%
    # interval below cannot fail by bad luck; the attacks never read the secret.
    raters = [Rater(f"rater-{n}", f"token-{n}-{'x' * 16}") for n in range(10)]
    (human / "raters.json").write_text(json.dumps({"raters": [vars(r) for r in raters]}))
    (human / "secret").write_bytes(hashlib.sha256(b"round 3").digest())
    blind = Blind(persona, RUN)
    items = simulated_items(1000)
    truth = [blind.order(raters[n % 10], item).index(AUTHOR) for n, item in enumerate(items)]
    low, high = binom.interval(0.99, len(items), 1 / 3)
    for attack, guess in ATTACKS.items():
        right = sum(guess(raters[n % 10].token, item) == truth[n] for n, item in enumerate(items))
        assert low <= right <= high, f"{attack}: {right} of {len(items)} right"
    # Nor is any place the author's more often than chance would make it.
    for place in range(3):
        assert low <= truth.count(place) <= high, f"author at {place}: {truth.count(place)}"


def test_the_secret_is_made_once_never_world_readable_and_orders_outlive_a_restart(lena, tmp_path):
    persona, env = lena
    log = tmp_path / "serve.log"
    with serving(env, log, "--raters", "1") as (url, tokens):
        first = httpx.get(f"{url}/api/blind/state", params={"rater": tokens["rater-1"]})
        assert first.status_code == 200, first.text
    secret = persona.ratf / "human" / "secret"
    made = secret.read_bytes()
    assert len(made) == 32 and stat.S_IMODE(secret.stat().st_mode) == 0o600
    raters = persona.ratf / "human" / "raters.json"  # the raters' tokens, private too
    assert stat.S_IMODE(raters.stat().st_mode) == 0o600
    with serving(env, log) as (url, _):
        again = httpx.get(f"{url}/api/blind/state", params={"rater": tokens["rater-1"]})
        assert httpx.get(f"{url}/static/secret").status_code == 404
    assert again.json()["item"]["choices"] == first.json()["item"]["choices"]
    assert secret.read_bytes() == made
    assert made.hex() not in first.text + again.text


def test_a_broken_secret_is_named_and_judgements_are_scored_without_it(lena, tmp_path):
    persona, env = lena
    secret = persona.ratf / "human" / "secret"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"short")
    served = subprocess.run(  # with a timeout: a server that starts would never return
        [str(BIN / "raft"), "serve", "lena", "--port", str(free_port()), *SERVE, "--raters", "1"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert served.returncode == 1
    assert served.stderr.strip().splitlines()[-1] == (
        f"raft: error: {secret}: not a blind-test secret (32 bytes); move it away to make a "
        "new one (the raters' answers will then be shown in new orders)"
    )
    # The judgements hold the order each rater was shown: scoring needs no secret.
    secret.unlink()
    blind = Blind(persona, RUN)
    (rater,) = add_raters(persona, 1)
    blind.judge(rater.token, blind.items[0].id, blind.order(rater, blind.items[0]).index(AUTHOR))
    secret.unlink()
    scored = run_cli("ratf", "score", "lena", "--run", RUN, "--no-likelihood", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "human blind test: 1 of 1 right" in scored.stdout
    assert not secret.exists()


# -- 10: rater ids that are not ASCII ---------------------------------------------------


def test_rater_ids_that_are_not_ascii_get_403_on_every_blind_endpoint(lena, tmp_path):
    _, env = lena
    log = tmp_path / "serve.log"
    with serving(env, log, "--raters", "1") as (url, tokens):
        for rater in ["é", "\ud800", "\x00", "\ufffd" * 3]:
            query = quote(rater.encode("utf-8", "surrogatepass"))
            state = httpx.get(f"{url}/api/blind/state?rater={query}")
            body = json.dumps({"rater": rater, "item": "x", "choice": 0})
            judge = httpx.post(
                f"{url}/api/blind/judge", content=body, headers={"Content-Type": "application/json"}
            )
            assert (state.status_code, judge.status_code) == (403, 403), (rater, state.text)
            assert judge.json()["error"]["code"] == "not_a_rater"
        raw = httpx.get(f"{url}/api/blind/state?rater=%C3%A9%FF")
        assert raw.status_code == 403
        assert httpx.get(f"{url}/blind?rater=%C3%A9").status_code == 200  # the page itself
        ok = httpx.get(f"{url}/api/blind/state", params={"rater": tokens["rater-1"]})
        assert ok.status_code == 200
    assert "Traceback" not in log.read_text()


# -- Low: raters, judgements and marks made at once -------------------------------------


def at_once(count: int, work) -> list:
    """`work(n)` in `count` threads released together; their results in order."""
    start = threading.Barrier(count)
    results: list = [None] * count

    def run(n: int) -> None:
        start.wait()
        results[n] = work(n)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_servers_adding_raters_at_once_keep_every_printed_link(lena):
    persona, _ = lena
    for _ in range(5):
        handed = at_once(6, lambda n: add_raters(persona, 2 + n % 3))
        kept = {r.token for r in load_raters(persona)}
        assert all(r.token in kept for raters in handed for r in raters)
        assert len(kept) == len({r.name for r in load_raters(persona)})


def test_two_servers_take_a_raters_judgement_of_an_item_once(lena):
    persona, _ = lena
    raters = add_raters(persona, 20)
    servers = [Blind(persona, RUN) for _ in range(4)]  # each with its own in-process lock
    item = servers[0].items[0]

    def judge(n: int, rater: Rater) -> int:
        try:
            servers[n].judge(rater.token, item.id, 0)
        except FileExistsError:
            return 409
        return 200

    for rater in raters:
        assert sorted(at_once(4, lambda n, rater=rater: judge(n, rater))) == [200, 409, 409, 409]
    lines = servers[0].path.read_text().splitlines()
    assert len(lines) == len(raters) == len(read_judgements(servers[0].path))


# -- Low: review marks ------------------------------------------------------------------


def write_samples(persona: Persona, count: int) -> list[dict]:
    """A raft.jsonl of `count` samples, one memory each, as ft:gen writes its rows."""
    from raft.dataset import Sample
    from raft.memory import Memory

    rows = []
    for n in range(count):
        memory = Memory(f"bees:{n}", "bees", "Rooftop Bees", "", "2020-03-01", "hives", 0.1)
        sample = Sample(
            f"talk#{n}", "talk", "Mo", "Lena Marsh", "2023-01-06", "", n, "Q?", "A.", [memory], []
        )
        rows.append(sample.to_row())
    persona.finetune.mkdir(parents=True, exist_ok=True)
    (persona.finetune / "raft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_review_marks_name_real_samples_and_reply_with_the_mark_only(lena, tmp_path):
    persona, env = lena
    rows = write_samples(persona, 60)
    with serving(env, tmp_path / "serve.log") as (url, _):

        def mark(sample: str, memory: str | None = None) -> httpx.Response:
            body = {"dataset": "raft", "sample": sample, "memory": memory, "drop": True}
            return httpx.post(f"{url}/api/review", json=body)

        unknown = mark("talk#999")
        assert unknown.status_code == 404, unknown.text
        assert unknown.json()["error"]["message"] == "no sample 'talk#999' in finetune/raft.jsonl"
        assert mark("talk#1", "bees:2").status_code == 404
        sizes = [len(mark(row["id"]).content) for row in rows]
        memory = mark("talk#3", "bees:3")
    assert memory.status_code == 200
    assert memory.json() == {
        "dataset": "raft",
        "sample": "talk#3",
        "memory": "bees:3",
        "drop": True,
    }
    assert max(sizes) < 100  # the mark, not the whole review
    review = json.loads((persona.finetune / "review.json").read_text())
    assert len(review["drop_samples"]) == 60 and "talk#999" not in review["drop_samples"]
    assert review["drop_memories"] == {"talk#3": ["bees:3"]}


# -- Low: replies in report.md ------------------------------------------------------------

HOSTILE = "![x](http://evil/)\n<script>alert(1)</script>\n| a | b |\n|---|---|\n# heading"


def test_replies_quoted_in_the_report_write_no_markdown_of_their_own(lena):
    persona, env = lena
    folder = persona.ratf / "runs" / RUN
    summary = {
        "persona": "lena",
        "target": "Lena Marsh",
        "run": RUN,
        "systems": ["base", "raft"],
        "replicas": {"base": {"spec": "local"}, "raft": {"spec": "x"}},
        "metrics": {},
        "examples": [
            {
                "id": "2023-01-10-held-out-podcast#0",
                "question": "What is\n===",
                "answer": "- [link](http://evil/) and <b>bold</b>",
                "replies": {"base": HOSTILE, "raft": "see www.evil.example & 1. `code`"},
            }
        ],
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    reported = run_cli("ratf", "report", "lena", env=env)
    assert reported.returncode == 0, reported.stderr

    from raft.web.reports import report_html  # the report page's renderer

    examples = report_html(persona, RUN).split("<h2>Examples</h2>")[1]
    page = "".join(re.findall(r"<blockquote>(.*?)</blockquote>", examples, re.S))  # the quotes
    for markup in ("<img", "<a ", "<script", "<b>", "<table", "<ul", "<ol", "<code"):
        assert markup not in page, markup
    assert "<h1>" not in page and "heading</h" not in page
    for line in [*HOSTILE.splitlines(), "- [link](http://evil/) and <b>bold</b>"]:
        assert html.escape(line, quote=False) in page, line
    assert "see www.evil.example &amp; 1. `code`" in page
