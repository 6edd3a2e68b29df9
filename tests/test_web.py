"""The web pages of `raft serve`, driven in headless Chromium (Debian's package, through
Playwright) against the real server on 127.0.0.1: the tiny persona after a real ft:gen, a
LoRA trained for two steps, a real `ratf run` of base and raft, and the real SmolLM2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from raft.review import load_review
from tests.helpers import BIN, free_port, run_cli, wait_for_http
from tests.tiny_persona import add_lora

KEY = "sk-web-test-key"
QUESTION = "How did you start keeping bees on a roof?"
WAIT = 300_000  # ms: a reply of SmolLM2 on a busy 2-core machine
CHROMIUM_ARGS = [  # no sandbox as root; nothing of Chromium's own reaches for the network
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class Server:
    """`raft serve lena ARGS` on a free port; `links` are the rater links it printed."""

    def __init__(self, env: dict[str, str], *args: str):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [str(BIN / "raft"), "serve", "lena", "--port", str(port), *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.links: dict[str, str] = {}
        if "--raters" in args:
            head = self.process.stdout.readline()
            assert head.startswith("blind test of run"), head
            for _ in range(int(args[args.index("--raters") + 1])):
                name, link = self.process.stdout.readline().split(": ")
                self.links[name.strip()] = link.strip()
        wait_for_http(f"{self.url}/v1/models", self.process)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def persona(generated, tmp_path_factory, extractive_lora):
    """A copy of the generated persona (its real raft.jsonl for review), trained on
    extractive-memory messages (memories that reach the slot), benchmarked and reported."""
    source, env, _ = generated
    data = tmp_path_factory.mktemp("web") / "data"
    shutil.copytree(source, data / "lena")
    env = {**env, "RAFT_DATA_DIR": str(data)}
    run = add_lora(data / "lena", extractive_lora)
    for command in (
        ["raft", "bench:setup", "lena"],
        ["ratf", "run", "lena", "--max-tokens", "24", "--replica", "base=local,memories=off"]
        + ["--replica", f"raft={run}"],
        ["ratf", "score", "lena", "--no-likelihood"],
        ["ratf", "report", "lena"],
    ):
        result = run_cli(*command, env=env)
        assert result.returncode == 0, result.stderr
    return data / "lena", env, run


@pytest.fixture(scope="module")
def server(persona):
    _, env, _ = persona
    served = Server(env, "--api-key", KEY, "--raters", "2", "--max-tokens", "24")
    yield served
    served.stop()


@pytest.fixture(scope="module")
def browser():
    chromium = os.environ.get("RAFT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        # No skip: scripts/test installs Chromium, and a browser that cannot start is a failure.
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, errors  # no page threw


def api_reply(url: str, model: str, messages: list[dict], memories: bool = True) -> dict:
    body = {"model": model, "messages": messages, "memories": memories}
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=600)
    assert response.status_code == 200, response.text
    return response.json()


def shown_memories(scope) -> list[tuple[str, str, str]]:
    """(date, title, text) of each memory a reply shows."""
    items = scope.locator("li.memory")
    return [
        (
            items.nth(n).locator(".date").inner_text(),
            items.nth(n).locator("a").inner_text(),
            items.nth(n).locator("blockquote").inner_text(),
        )
        for n in range(items.count())
    ]


def test_chat_streams_the_replies_api_gives_with_their_memories_and_keeps_the_tab_history(
    server, page, shots, browser
):
    page.goto(f"{server.url}/#key={KEY}")  # the key travels in the fragment, never logged
    expect(page.locator("#model")).to_have_value("lena")
    sent: list[dict] = []
    page.on(
        "request",
        lambda r: sent.append(json.loads(r.post_data)) if r.url.endswith("/completions") else None,
    )
    page.fill("#question", QUESTION)
    page.press("#question", "Enter")
    expect(page.locator("article[data-done='true']")).to_have_count(1, timeout=WAIT)

    first = page.locator("article.turn").first
    api = api_reply(server.url, "lena", [{"role": "user", "content": QUESTION}])
    assert first.locator(".reply").inner_text() == api["choices"][0]["message"]["content"]
    memories = shown_memories(first)
    assert memories and memories == [(m["date"], m["title"], m["memory"]) for m in api["memories"]]
    assert all(date.startswith("20") for date, _, _ in memories)
    links = first.locator("li.memory a")
    assert [links.nth(n).get_attribute("href") for n in range(links.count())] == [
        m["link"] for m in api["memories"]
    ]
    page.screenshot(path=shots / "chat.png", full_page=True)

    # The conversation survives a reload of the tab and goes with the next question.
    page.reload()
    expect(page.locator("article.turn")).to_have_count(1)
    page.fill("#question", "And the honey?")
    page.click("#send")
    expect(page.locator("article[data-done='true']")).to_have_count(2, timeout=WAIT)
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "user"]
    assert sent[-1]["messages"][1]["content"] == first.locator(".reply").inner_text()

    page.fill("#question", "/reset")
    page.click("#send")
    expect(page.locator("article.turn")).to_have_count(0)
    page.reload()
    expect(page.locator("#model")).to_have_value("lena")
    expect(page.locator("article.turn")).to_have_count(0)

    # A phone-sized screen: nothing wider than the screen.
    phone = browser.new_page(viewport={"width": 390, "height": 844})
    phone.goto(f"{server.url}/#key={KEY}")
    expect(phone.locator("#model")).to_have_value("lena")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=shots / "chat-phone.png", full_page=True)
    phone.close()


def test_without_the_key_the_page_asks_for_it_and_the_api_refuses(server, page):
    page.goto(server.url)
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#key", KEY)
    page.click("#key-form button")
    expect(page.locator("#model")).to_have_value("lena")
    assert httpx.get(f"{server.url}/api/runs").status_code == 401


def test_compare_answers_one_question_with_two_replicas_side_by_side(server, page, shots, persona):
    _, _, run = persona
    page.goto(f"{server.url}/compare#key={KEY}")
    columns = page.locator("section.column")
    expect(columns).to_have_count(2)
    expect(columns.nth(0).locator("select")).to_have_value("base")
    columns.nth(1).locator("select").select_option(run)
    columns.nth(0).locator("input[type=checkbox]").uncheck()  # base, without memories
    page.fill("#question", QUESTION)
    page.click("#send")
    expect(page.locator("section.column[data-done='true']")).to_have_count(2, timeout=WAIT)
    page.screenshot(path=shots / "compare.png", full_page=True)

    question = [{"role": "user", "content": QUESTION}]
    base = api_reply(server.url, "base", question, memories=False)
    raft = api_reply(server.url, run, question)
    assert columns.nth(0).locator(".reply").inner_text() == base["choices"][0]["message"]["content"]
    assert columns.nth(1).locator(".reply").inner_text() == raft["choices"][0]["message"]["content"]
    assert base["memories"] == [] and shown_memories(columns.nth(0)) == []
    assert shown_memories(columns.nth(1)) == [
        (m["date"], m["title"], m["memory"]) for m in raft["memories"]
    ]


def test_report_page_renders_the_runs_report_with_its_plots(server, page, shots, persona):
    folder, _, _ = persona
    (run,) = [p.name for p in (folder / "ratf" / "runs").iterdir()]
    page.goto(f"{server.url}/report#key={KEY}")
    expect(page.locator("#report h1")).to_contain_text(f"RATF report: Lena Marsh — run {run}")
    expect(page.locator("#run option")).to_have_text([f"{run}: base, raft"])
    assert page.locator("#report table").count() >= 2
    images = page.locator("#report img")
    assert images.count() >= 1
    for n in range(images.count()):
        assert images.nth(n).get_attribute("src").startswith("data:image/png;base64,")
        assert images.nth(n).evaluate("image => image.naturalWidth") > 100  # decoded
    page.screenshot(path=shots / "report.png", full_page=True)


def test_review_marks_a_sample_and_a_memory_and_keeps_them(server, page, shots, persona):
    folder, _, _ = persona
    rows = [json.loads(line) for line in (folder / "finetune" / "raft.jsonl").open()]
    with_memory = next(r for r in rows[1:] if r["kept"])
    page.goto(f"{server.url}/samples#key={KEY}")
    cards = page.locator("article.sample")
    expect(cards).to_have_count(len(rows))
    expect(page.locator("#range")).to_have_text(f"1–{len(rows)} of {len(rows)}")

    first = page.locator(f"article.sample[data-id='{rows[0]['id']}']")
    first.get_by_label("drop this sample").check()
    expect(first).to_have_attribute("data-saved", "true")
    card = page.locator(f"article.sample[data-id='{with_memory['id']}']")
    card.locator("summary").click()
    memory = card.locator(f"li.memory[data-chunk='{with_memory['kept'][0]}']")
    memory.get_by_label("drop this memory").check()
    expect(memory).to_have_attribute("data-saved", "true")
    page.screenshot(path=shots / "samples.png", full_page=True)

    review = load_review(folder / "finetune")
    assert review.samples == {rows[0]["id"]}
    assert review.memories == {with_memory["id"]: {with_memory["kept"][0]}}
    page.reload()  # the marks are the file's, not the page's
    expect(first.get_by_label("drop this sample")).to_be_checked()
    expect(first).to_have_class("sample dropped")


def blind_pick(page, items: dict, author: bool) -> None:
    """Pick the author's answer (known to the test from bench/items.jsonl), or another."""
    question = page.locator("#question").inner_text()
    answer = items[question]
    choices = page.locator("label.choice")
    texts = [choices.nth(n).inner_text().split(": ", 1)[1] for n in range(choices.count())]
    pick = texts.index(answer) if author else next(n for n, t in enumerate(texts) if t != answer)
    choices.nth(pick).locator("input").check()
    done = page.locator("#progress").inner_text()
    page.click("#judge button")
    expect(page.locator("#progress")).not_to_have_text(done)


def test_blind_test_by_two_raters_without_the_key_across_two_servers(
    server, browser, persona, shots
):
    folder, env, _ = persona
    bench = [json.loads(line) for line in (folder / "bench" / "items.jsonl").open()]
    items = {row["question"]: row["answer"] for row in bench}
    assert len(items) == 2 and set(server.links) == {"rater-1", "rater-2"}
    context = browser.new_context()  # no key anywhere
    page = context.new_page()

    page.goto(server.links["rater-1"])
    expect(page.locator("#progress")).to_have_text("rater-1: 0 of 2 answered")
    expect(page.locator("label.choice")).to_have_count(3)  # the author, base and raft
    page.screenshot(path=shots / "blind.png", full_page=True)
    blind_pick(page, items, author=True)
    expect(page.locator("#progress")).to_have_text("rater-1: 1 of 2 answered")

    # The same link on a second server (or after a restart) goes on where it stopped.
    other = Server(env, "--api-key", KEY)
    try:
        page.goto(server.links["rater-1"].replace(server.url, other.url))
        expect(page.locator("#progress")).to_have_text("rater-1: 1 of 2 answered")
        blind_pick(page, items, author=True)
    finally:
        other.stop()
    expect(page.locator("#result")).to_have_text(
        "Done, thank you. You picked the author's answer 2 of 2 times."
    )

    page.goto(server.links["rater-2"])
    for _ in items:
        blind_pick(page, items, author=False)
    expect(page.locator("#result")).to_contain_text("You picked the author's answer 0 of 2 times")

    page.goto(f"{server.url}/blind?rater=not-a-token")
    expect(page.locator(".error")).to_contain_text("this link is not a rater's")
    # The page is never told which answer is whose.
    token = server.links["rater-1"].split("rater=")[1]
    state = httpx.get(f"{server.url}/api/blind/state", params={"rater": token}).json()
    assert set(state) == {"rater", "run", "total", "done", "correct"} and state["correct"] == 2
    context.close()


def test_after_the_server_stops_ratf_scores_the_raters_and_ft_gen_drops_the_marks(server, persona):
    folder, env, _ = persona
    server.stop()  # ratf score and ft:gen write to the persona: the server must be gone
    (run,) = [p.name for p in (folder / "ratf" / "runs").iterdir()]
    judgements = (folder / "ratf" / "human" / f"{run}.jsonl").read_text().splitlines()
    assert len(judgements) == 4

    scored = run_cli("ratf", "score", "lena", "--no-likelihood", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "human blind test: 2 of 4 right (50%" in scored.stdout
    summary = json.loads((folder / "ratf" / "runs" / run / "summary.json").read_text())
    assert summary["human"]["accuracy"]["correct"] == 2 and summary["human"]["raters"] == 2
    assert sum(s["picked"] for s in summary["human"]["systems"].values()) == 2
    reported = run_cli("ratf", "report", "lena", env=env)
    assert reported.returncode == 0, reported.stderr
    report = (folder / "ratf" / "runs" / run / "report.md").read_text()
    assert "## Human blind test" in report and "2 of 4" in report

    review = load_review(folder / "finetune")
    (dropped,) = review.samples
    ((sample, chunks),) = review.memories.items()
    rebuilt = run_cli("raft", "ft:gen", "lena", "--oai", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    written = [
        json.loads(line)
        for name in ("messages.jsonl", "messages.valid.jsonl")
        for line in (folder / "finetune" / name).open()
    ]
    assert dropped not in {row["id"] for row in written}
    rows = {r["id"]: r for r in map(json.loads, (folder / "finetune" / "raft.jsonl").open())}
    memory = next(m for m in rows[sample]["memories"] if m["chunk_id"] in chunks)
    (row,) = [r for r in written if r["id"] == sample]
    assert memory["rephrased"] not in json.dumps(row)
    stats = json.loads((folder / "finetune" / "stats.json").read_text())
    assert stats["review"]["samples_dropped"] == 1 and stats["review"]["memories_dropped"] == 1
