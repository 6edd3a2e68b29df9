"""Retrieve -> rephrase -> gate -> judge: the one path shared by ft:gen, chat/serve and
bench:setup, so the replica is tested and served on exactly what it was trained on. The
memory slot itself is rendered by `raft.conversation`.

In the `extractive` memory style a memory is the author's own sentences (`raft.extractive`)
rather than an LLM's rephrasing, and needs no gate. A rephrasing passes a cheap gate before
any judge: echoes of the prompt or question, fragments, talk about the author rather than
as them, and text far from its passage are dropped with a reason, at no judge call.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

from raft.backends.llm import CachedLLM, StructuredOutputError, complete_json, parse_json
from raft.concurrency import bounded_map
from raft.conversation import ConversationSpec
from raft.extractive import extract, sentences
from raft.memory import Memory
from raft.paragraphs import paragraph_memories
from raft.prompts import quote, render, template
from raft.store import Store
from raft.transcripts import INTERVIEW_ANSWER

if TYPE_CHECKING:
    from raft.backends.embed import Embedder

# A verdict's reason is capped, so that the JSON always closes within the token budget:
# small models otherwise ramble in it until the reply is cut off mid-string.
REASON = {"type": "string", "maxLength": 200}
# In a batch, a few words: on a CPU the verdicts' own tokens are most of a batch's time
# (a generated token costs llama.cpp about eight prompt tokens' time), and a reason is a note
# for the person reviewing the data, not what decides the verdict.
BATCH_REASON = {"type": "string", "maxLength": 40}


def _verdict_schema(field: str, reason: dict[str, Any] = REASON) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {field: {"type": "boolean"}, "reason": reason},
        "required": [field, "reason"],
        "additionalProperties": False,
    }


USEFUL = _verdict_schema("useful")
CONSISTENT = _verdict_schema("consistent")


def verdicts_schema(field: str, ids: list[int]) -> dict[str, Any]:
    """A batch of verdicts: one per memory numbered in `ids`, each naming its memory."""
    item = _verdict_schema(field, BATCH_REASON)
    item["properties"] = {"id": {"type": "integer", "enum": ids}} | item["properties"]
    item["required"] = ["id", *item["required"]]
    batch = {"type": "array", "items": item, "minItems": len(ids), "maxItems": len(ids)}
    return {
        "type": "object",
        "properties": {"verdicts": batch},
        "required": ["verdicts"],
        "additionalProperties": False,
    }


def batch_verdicts(text: str, schema: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The well-formed verdicts of a batch reply by memory number, the first for each; a
    memory whose verdict is missing or malformed is left out, to be judged on its own."""
    import jsonschema

    try:
        data = parse_json(text, {"type": "object", "required": ["verdicts"]})
    except (ValueError, jsonschema.ValidationError):
        return {}
    item = schema["properties"]["verdicts"]["items"]
    found: dict[int, dict[str, Any]] = {}
    for verdict in data["verdicts"] if isinstance(data["verdicts"], list) else []:
        try:
            jsonschema.validate(verdict, item)
        except jsonschema.ValidationError:
            continue
        found.setdefault(verdict["id"], verdict)
    return found


_PREAMBLE = re.compile(r"^(sure|okay|ok|here is|here's|certainly)\b[^\n:]*:\s*", re.I)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
MAX_SENTENCES = 2  # what the rephrase prompt asks for; small models run on and repeat


def clean_rephrasing(text: str) -> str:
    """At most two distinct sentences, without a chatty preamble or wrapping quotes."""
    text = " ".join(_PREAMBLE.sub("", text.strip()).split())
    if len(text) > 1 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    sentences = list(dict.fromkeys(s for s in _SENTENCE_END.split(text) if s))
    return " ".join(sentences[:MAX_SENTENCES])


# The cheap gate: what a rephrasing that is not a memory of the author looks like. Checked
# before any judge (a gated memory costs no judge call), in this order; each is a stable code.
# `below_best` comes first: such a passage is never rephrased (the spec's `skip_below`).
GATES = ("below_best", "prompt_echo", "question_echo", "too_short", "third_person", "off_passage")
ECHO_RUN = 5  # words in a row shared with the rephrase prompt's own instructions
MIN_WORDS = 4  # fewer words are a fragment ("Gemma,", "Lena Marsh,"), not a memory
QUESTION_SHARE = 0.8  # share of a rephrasing's words taken from the question
# Cosine similarity (MiniLM) of a rephrasing to its passage, or to the nearest sentence of
# it, below which it is about something else (`passage_similarities`). On SmolLM2's
# rephrasings of the tiny and sample personas, the evasions ("I'm not sure what to say.")
# scored 0.17-0.32, invented scenes 0.42-0.43, and those that kept to the passage 0.49 up.
MIN_PASSAGE_SIMILARITY = 0.45

_WORDS = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_QUOTE_TAG = re.compile(r"</?(?:question|passage|memory|answer)(?:-[0-9a-f]{12})?>", re.I)
_QUESTION_LABEL = re.compile(r"^\W*(?:the\s+)?question(?:\s+is)?\s*[:\-]", re.I)
# Talk about the task rather than the author's past, which the prompt itself rules out.
_TASK_TALK = re.compile(
    r"\b(?:the|this) passage\b|\b(?:ai|writing|language) (?:model|assistant)\b", re.I
)
_FIRST_PERSON = re.compile(r"\bI\b|\bI'|\b(?:me|my|mine|myself|we|our|ours|us)\b", re.I)


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower().replace("\u2019", "'"))


@cache
def _instruction_runs(target: str) -> frozenset[tuple[str, ...]]:
    """Every ECHO_RUN words in a row of the rephrase prompt's fixed text for `target`; the
    quoted question and passage and the date are breaks, since they are not instructions."""
    fixed = re.split(r"\$(?:question|passage|date)\b", template("rephrase"))
    runs: set[tuple[str, ...]] = set()
    for piece in fixed:
        words = _words(piece.replace("$target", target))
        runs.update(tuple(words[n : n + ECHO_RUN]) for n in range(len(words) - ECHO_RUN + 1))
    return frozenset(runs)


def _contains(words: list[str], run: list[str]) -> bool:
    return any(words[n : n + len(run)] == run for n in range(len(words) - len(run) + 1))


def gate_reason(rephrased: str, question: str, target: str) -> str:
    """Why a rephrasing is not a memory of the author, judged from its text alone (one of
    GATES but `off_passage`, which needs embeddings), or "" when it may go to the judge."""
    words = _words(rephrased)
    runs = _instruction_runs(target)
    if (
        _QUOTE_TAG.search(rephrased)
        or _TASK_TALK.search(rephrased)
        or any(tuple(words[n : n + ECHO_RUN]) in runs for n in range(len(words) - ECHO_RUN + 1))
    ):
        return "prompt_echo"
    asked = _words(question)
    if asked and words:
        if _QUESTION_LABEL.match(rephrased):
            return "question_echo"
        # The question again, give or take a few words around it.
        if len(asked) >= 3 and _contains(words, asked) and len(words) - len(asked) < 6:
            return "question_echo"
        if sum(w in set(asked) for w in words) >= QUESTION_SHARE * len(words):
            return "question_echo"
    if len(words) < MIN_WORDS:
        return "too_short"
    if _not_as_author(rephrased, target):
        return "third_person"
    return ""


def _not_as_author(rephrased: str, target: str) -> bool:
    """Speaks about the author ("Lena Marsh, a dedicated beekeeper, has...": their name and
    no first person) or to them ("Lena, I'm glad..."), rather than as them."""
    names = {w for w in re.findall(r"[^\W\d_]{2,}", target) if w[0].isupper()}
    if not names:
        return False
    address = re.match(r"\W*((?:[^\W\d_]+\s+){0,3}[^\W\d_]+)\s*,", rephrased)
    if address and set(address[1].split()) <= names:
        return True
    named = names & set(re.findall(r"[^\W\d_]+", rephrased))
    return bool(named) and not _FIRST_PERSON.search(rephrased)


def passage_similarities(embedder: Embedder, pairs: list[tuple[str, str]]) -> list[float]:
    """For each (rephrasing, passage), the cosine similarity of the rephrasing to the passage
    or to the nearest of its sentences, whichever is higher: a sentence recalled word for word
    from a long passage is far from the passage as a whole. One embedding call for all."""
    if not pairs:
        return []
    texts: list[str] = []
    spans: list[tuple[int, int]] = []  # where each pair's passage and sentences sit in texts
    for rephrased, passage in pairs:
        found = [passage[s.start : s.end] for s in sentences(passage) if s.prose]
        texts += [rephrased, passage, *found]
        spans.append((len(texts) - len(found) - 2, len(texts)))
    vectors = embedder.embed(texts)
    return [float((vectors[start + 1 : end] @ vectors[start]).max()) for start, end in spans]


def _answer_start(memory: Memory) -> int:
    """Where the author's own words begin: an earlier interview's memory opens with the
    question it answered, which is not theirs."""
    if memory.kind != "interview":
        return 0
    at = memory.text.find(INTERVIEW_ANSWER)
    return at + len(INTERVIEW_ANSWER) if at >= 0 else 0


class Recall:
    """Memories for a question from the author's earlier writing, judged as at inference.

    Built from a conversation spec, so training and inference retrieve, rephrase and judge
    the same way: same `k`, same use of the previous answer, same generation settings.
    """

    def __init__(self, store: Store, llm: CachedLLM, spec: ConversationSpec):
        self.store = store
        self.llm = llm
        self.spec = spec
        self.target = spec.target

    def retrieve(
        self,
        question: str,
        before: str | None,
        previous_answer: str = "",
        exclude_doc: str | None = None,
    ) -> list[Memory]:
        """Top-k chunks dated strictly before `before`, one per document part, no repeats;
        with the spec's unit "paragraph", the k nearest paragraphs of the author's writing.

        With the spec's `context`, the previous answer joins the query."""
        k = self.spec.k
        query = (
            f"{previous_answer}\n\n{question}"
            if self.spec.context and previous_answer
            else question
        )
        if self.paragraphs:
            return paragraph_memories(self.store, query, before, k, exclude_doc)
        hits = self.store.query(query, k=k * 2, before_date=before, exclude_doc=exclude_doc)
        memories: list[Memory] = []
        seen: set[str] = set()
        for hit in hits:
            key = " ".join(hit.text.split())
            if hit.id in seen or key in seen:
                continue
            seen.update((hit.id, key))
            memories.append(Memory.from_hit(hit))
            if len(memories) == k:
                break
        return memories

    def _chat(self, prompt: str, max_tokens: int) -> str:
        s = self.spec
        messages = [{"role": "user", "content": prompt}]
        return self.llm.complete(
            messages, temperature=s.temperature, max_tokens=max_tokens, seed=s.seed, stop=["\n\n"]
        )

    def _judge(self, prompt: str, schema: dict[str, Any]) -> dict[str, Any]:
        s = self.spec
        messages = [{"role": "user", "content": prompt}]
        return complete_json(
            self.llm,
            messages,
            schema,
            temperature=s.temperature,
            max_tokens=s.judge_tokens,
            seed=s.seed,
        )

    @property
    def extractive(self) -> bool:
        return self.spec.memory_style == "extractive"

    @property
    def paragraphs(self) -> bool:
        """Memories are the author's paragraphs, shown whole: nothing to extract or rephrase."""
        return self.spec.unit == "paragraph"

    def rephrase(self, question: str, memory: Memory) -> None:
        """The memory in the spec's style: the author's own sentences about the question
        (`extractive`, no LLM call), or an LLM's first-person recollection (`rephrased`)."""
        if self.extractive:
            self.extract(question, [memory])
            return
        prompt = render(
            "rephrase",
            target=self.target,
            question=quote("question", question),
            date=memory.date or "an unknown date",
            passage=quote("passage", memory.text),
        )
        memory.rephrased = clean_rephrasing(self._chat(prompt, self.spec.rephrase_tokens))
        if not memory.rephrased:
            memory.error = "empty rephrasing"

    def extract(self, question: str, memories: list[Memory]) -> None:
        """Extractive memories: verbatim sentences of each chunk, chosen by the embedder;
        of an earlier interview, only the author's answer."""
        starts = [_answer_start(m) for m in memories]
        texts = [m.text for m in memories]
        for memory, span in zip(
            memories, extract(question, texts, self.store.embedder, starts), strict=True
        ):
            memory.rephrased = span
            if not span:
                memory.error = "no sentence to extract"

    def gate(self, question: str, memories: list[Memory]) -> None:
        """Drop rephrasings that are not memories of the author before any judge sees them:
        echoes of the prompt or the question, fragments, talk about the author, and text far
        from its passage. One embedding call for the lot; extractive memories are exempt."""
        if self.extractive:
            return
        for memory in memories:
            if not memory.error and not memory.gate:
                memory.gate = gate_reason(memory.rephrased, question, self.target)
        left = [m for m in memories if not m.error and not m.gate]
        similarities = passage_similarities(
            self.store.embedder, [(m.rephrased, m.text) for m in left]
        )
        for memory, similarity in zip(left, similarities, strict=True):
            if similarity < MIN_PASSAGE_SIMILARITY:
                memory.gate = "off_passage"
        for memory in memories:
            if memory.gate:
                memory.useful = False

    def judge_question(self, question: str, memory: Memory) -> None:
        """Pass 1: useful from the question alone; the exact judgement made at inference."""
        if memory.error or memory.gate:
            memory.useful = False
            return
        prompt = render(
            "judge_question",
            target=self.target,
            question=quote("question", question),
            memory=quote("memory", memory.rephrased),
        )
        try:
            verdict = self._judge(prompt, USEFUL)
        except StructuredOutputError as exc:
            memory.useful, memory.error = False, str(exc)
            return
        memory.useful, memory.useful_reason = verdict["useful"], verdict["reason"].strip()

    def judge_answer(self, question: str, answer: str, memory: Memory) -> None:
        """Pass 2 (training only): consistent with and relevant to the real answer."""
        prompt = render(
            "judge_answer",
            target=self.target,
            question=quote("question", question),
            answer=quote("answer", answer),
            memory=quote("memory", memory.rephrased),
        )
        try:
            verdict = self._judge(prompt, CONSISTENT)
        except StructuredOutputError as exc:
            memory.consistent, memory.error = False, str(exc)
            return
        memory.consistent = verdict["consistent"]
        memory.consistent_reason = verdict["reason"].strip()

    def skip_far(self, memories: list[Memory]) -> None:
        """Gate the passages the spec's `skip_below` puts too far below the best hit, before
        they cost a rephrasing or a judge."""
        if not self.spec.skip_below or not memories:
            return
        best = min(m.distance for m in memories)
        for memory in memories:
            if memory.distance - best > self.spec.skip_below:
                memory.gate, memory.useful = "below_best", False

    def recall(
        self,
        question: str,
        before: str | None,
        previous_answer: str = "",
        exclude_doc: str | None = None,
    ) -> list[Memory]:
        """Retrieve, rephrase, gate and judge from the question alone, as the replica does
        live."""
        memories = self.retrieve(question, before, previous_answer, exclude_doc)
        self.skip_far(memories)
        near = [m for m in memories if not m.gate]
        if self.paragraphs:
            pass  # already the author's own paragraphs, verbatim: only the judges run
        elif self.extractive:
            self.extract(question, near)
        else:
            bounded_map(lambda m: self.rephrase(question, m), near, self.llm.concurrency)
            self.gate(question, memories)
        if self.spec.judge_batch:
            self.judge_questions(question, memories)
        else:
            bounded_map(lambda m: self.judge_question(question, m), memories, self.llm.concurrency)
        return memories

    def check_against_answer(self, question: str, answer: str, memories: list[Memory]) -> None:
        """Pass 2 for the memories that passed pass 1."""
        if self.spec.judge_batch:
            self.judge_answers(question, answer, memories)
            return
        useful = [m for m in memories if m.useful]
        bounded_map(lambda m: self.judge_answer(question, answer, m), useful, self.llm.concurrency)

    # Batched judging (the spec's `judge_batch`): one call per pass for all memories of a
    # question. Both passes' prompts open with the same question and numbered memories, so a
    # prompt cache (llama.cpp's KV cache in-process) evaluates pass 2's only from the answer.

    def _judged(self, memories: list[Memory]) -> list[Memory]:
        """The memories that go to the judge, in the order they are numbered from 1."""
        return [m for m in memories if m.rephrased and not m.gate]

    def _shared_head(self, question: str, judged: list[Memory]) -> str:
        # One quoted block for all of them: a tag pair costs ~20 tokens of hash per memory.
        numbered = "\n\n".join(f"Memory {n}: {m.rephrased}" for n, m in enumerate(judged, 1))
        return render(
            "judge_memories",
            target=self.target,
            question=quote("question", question),
            memories=quote("memories", numbered),
        )

    def _judge_batch(self, prompt: str, field: str, ids: list[int]) -> dict[int, dict[str, Any]]:
        s = self.spec
        schema = verdicts_schema(field, ids)
        text = self.llm.complete(
            [{"role": "user", "content": prompt}],
            schema=schema,
            temperature=s.temperature,
            max_tokens=s.judge_tokens * len(ids),
            seed=s.seed,
        )
        return batch_verdicts(text, schema)

    def _unjudged(self, judged: list[Memory], ids: list[int], verdicts: dict) -> list[Memory]:
        missing = [judged[n - 1] for n in ids if n not in verdicts]
        for memory in missing:
            memory.alone = True
        return missing

    def judge_questions(self, question: str, memories: list[Memory]) -> None:
        """Pass 1 in one call; a memory without a well-formed verdict is judged alone."""
        for memory in memories:
            if memory.error or memory.gate:
                memory.useful = False
        judged = self._judged(memories)
        if not judged:
            return
        ids = list(range(1, len(judged) + 1))
        prompt = (
            self._shared_head(question, judged)
            + "\n\n"
            + render("judge_useful", target=self.target)
        )
        verdicts = self._judge_batch(prompt, "useful", ids)
        for n, verdict in verdicts.items():
            judged[n - 1].useful = verdict["useful"]
            judged[n - 1].useful_reason = verdict["reason"].strip()
        for memory in self._unjudged(judged, ids, verdicts):
            self.judge_question(question, memory)

    def judge_answers(self, question: str, answer: str, memories: list[Memory]) -> None:
        """Pass 2 in one call for the memories that passed pass 1, after the same opening
        as pass 1's prompt; a memory without a well-formed verdict is judged alone."""
        judged = self._judged(memories)
        ids = [n for n, m in enumerate(judged, 1) if m.useful]
        if not ids:
            return
        prompt = (
            self._shared_head(question, judged)
            + "\n\n"
            + render(
                "judge_consistent",
                target=self.target,
                ids=", ".join(map(str, ids)),
                answer=quote("answer", answer),
            )
        )
        verdicts = self._judge_batch(prompt, "consistent", ids)
        for n, verdict in verdicts.items():
            judged[n - 1].consistent = verdict["consistent"]
            judged[n - 1].consistent_reason = verdict["reason"].strip()
        for memory in self._unjudged(judged, ids, verdicts):
            self.judge_answer(question, answer, memory)
