"""Labelling unlabelled interview text: the real SmolLM2 through llama.cpp, and a fake model
whose batch replies are malformed, to see the paragraph-at-a-time fallback."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from raft.backends.cache import Cache
from raft.backends.llm import CachedLLM, Reply, Usage, make_llm
from raft.interviews.speakers import assign_speakers, chunk_paragraphs
from raft.interviews.turns import ANSWER, QUESTION, Turn

TARGET, INTERVIEWER = "Lena Marsh", "Sam Reed"
INTERVIEW = [
    (QUESTION, "Welcome. Today I'm talking with Lena Marsh, who keeps bees. How did you start?"),
    (ANSWER, "I started twenty years ago when my grandmother left me two hives."),
    (QUESTION, "What did you learn from that first summer?"),
    (ANSWER, "Patience, mostly. I learned to open the hive only on warm, still afternoons."),
    (QUESTION, "And what do you say to people who are afraid of bees?"),
    (ANSWER, "I tell them to sit near a hive for ten minutes. Fear goes once you watch them."),
    (QUESTION, "Thank you, Lena."),
]
PARAGRAPHS = [text for _, text in INTERVIEW]


def test_the_local_model_labels_each_paragraph_one_call_per_chunk(tmp_path: Path):
    path = tmp_path / "cache.sqlite"
    llm = make_llm("local", Cache(path))
    counts: Counter[str] = Counter()
    turns = assign_speakers(PARAGRAPHS, llm, TARGET, INTERVIEWER, max_paragraphs=4, counts=counts)

    assert [t.text for t in turns] == PARAGRAPHS  # one turn per paragraph, unchanged, in order
    assert {t.speaker for t in turns} <= {QUESTION, ANSWER}
    assert counts["chunks"] == 2 and llm.calls == 2  # 4 + 3 paragraphs, one call each
    right = sum(t.speaker == speaker for t, (speaker, _) in zip(turns, INTERVIEW, strict=True))
    assert right >= 5, turns  # far better than chance on a plain question/answer interview

    again = make_llm("local", Cache(path))  # a later run, as from a new process
    assert assign_speakers(PARAGRAPHS, again, TARGET, INTERVIEWER, max_paragraphs=4) == turns
    assert again.calls == 0


_PARAGRAPH = re.compile(r"<paragraph-[0-9a-f]{12}>\n(.*?)\n</paragraph-[0-9a-f]{12}>", re.S)


class OneAtATime:
    """A real LLM implementation that cannot count: a batch gets one label too few; asked
    about one paragraph, it labels a question "q", anything else "a", and garbles its reply
    for a paragraph that mentions "static"."""

    model_id = "one-at-a-time"
    concurrency = 1

    def __init__(self):
        self.batches: list[list[str]] = []  # the paragraphs of every call, in order

    def complete(self, messages, *, schema=None, **params):
        paragraphs = _PARAGRAPH.findall(messages[-1]["content"])
        self.batches.append(paragraphs)
        if len(paragraphs) > 1:
            return Reply(json.dumps({"labels": ["q"] * (len(paragraphs) - 1)}), Usage(1))
        if "static" in paragraphs[0]:
            return Reply('{"labels": ["a', Usage(1))
        label = "q" if paragraphs[0].endswith("?") else "a"
        return Reply(json.dumps({"labels": [label]}), Usage(1))


def test_a_malformed_batch_is_asked_again_a_paragraph_at_a_time(tmp_path: Path):
    paragraphs = [
        "How did you start?",
        "My grandmother left me two hives.",
        "She had kept them for forty years, through static and storms.",
        "What came next?",
    ]
    model = OneAtATime()
    llm = CachedLLM(model, Cache(tmp_path / "cache.sqlite"))
    counts: Counter[str] = Counter()
    turns = assign_speakers(paragraphs, llm, TARGET, INTERVIEWER, counts=counts)

    assert model.batches == [paragraphs, *([p] for p in paragraphs)]  # the batch, then each
    assert turns == [
        Turn(QUESTION, paragraphs[0]),
        Turn(ANSWER, paragraphs[1]),
        Turn(ANSWER, paragraphs[2]),  # the garbled one continues the speaker before it
        Turn(QUESTION, paragraphs[3]),
    ]
    assert counts == Counter(chunks=1, retried=1, guessed=1)

    again = CachedLLM(OneAtATime(), Cache(tmp_path / "cache.sqlite"))
    assert assign_speakers(paragraphs, again, TARGET, INTERVIEWER) == turns
    assert again.calls == 0  # the fallback calls are cached too


def test_a_garbled_first_paragraph_is_a_question():
    model = OneAtATime()
    paragraphs = ["Some static on the line.", "Can you hear me now?"]
    counts: Counter[str] = Counter()
    turns = assign_speakers(paragraphs, CachedLLM(model), TARGET, INTERVIEWER, counts=counts)
    assert [t.speaker for t in turns] == [QUESTION, QUESTION]
    assert counts["guessed"] == 1 and len(model.batches) == 3


def test_chunks_are_bounded_by_paragraphs_and_tokens():
    long = "word " * 2000
    chunks = chunk_paragraphs(["a", "b", "c", long, "d"], max_paragraphs=2, max_tokens=1500)
    assert chunks == [["a", "b"], ["c"], [long], ["d"]]
