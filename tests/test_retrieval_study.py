"""The retrieval study's measures (studies/retrieval_rank.py): recall@k of the annotated
sources, reciprocal-rank fusion and the gates, on hand-made memories (no model)."""

from raft.memory import Memory
from studies.retrieval_rank import gate_floor, gate_score, recall_at, rrf


def memory(doc: str, distance: float, part: int = 0) -> Memory:
    link = f"https://example.org/p/{doc}/"
    return Memory(f"{doc}-{part}", doc, doc, link, "2021-01-01", "text", distance)


def test_recall_at_k_counts_source_essays_among_the_first_k():
    found = [memory("screws", 0.2), memory("glue", 0.3), memory("screws", 0.35, 1)]
    sources = ["ten-notes-on-glue", "screws", "https://example.org/p/glue"]
    # "screws" by doc id, "glue" by link (slash-less); the slug of another essay is missed.
    assert recall_at(found, sources, 1) == 1 / 3
    assert recall_at(found, sources, 2) == 2 / 3
    assert recall_at(found, [], 2) is None


def test_fusion_ranks_what_both_rankings_put_high_first():
    # 2 is second in both; 0 and 3 are first in one ranking and last in the other.
    assert rrf([0, 2, 1, 3], [3, 2, 1, 0])[0] == 2
    assert rrf([5, 6]) == [5, 6]


def test_gates_by_precision_and_recall_against_sources():
    retrieved = [memory("screws", 0.30), memory("glue", 0.33), memory("kettle", 0.6)]
    kept = gate_floor(retrieved, within=0.05, floor=None)
    assert [m.doc_id for m in kept] == ["screws", "glue"]
    assert gate_floor(retrieved, within=None, floor=0.31) == retrieved[:1]
    score = gate_score([(retrieved, kept, ["screws", "kettle"])])
    assert (score.kept, score.relevant, score.relevant_kept) == (2, 2, 1)
    assert (score.precision, score.recall) == (0.5, 0.5)


def record(persona: str, diffs: dict[str, tuple[float, float]]) -> dict:
    """A study record whose training likelihoods put each variant (mean, high) vs today's."""
    cell = {"mean": 0.5, "low": 0.1, "high": 0.9, "n": 9}
    effects = {"chunk/k6/question/dense": {"gap_closed": cell, "vs_today": None}}
    for name, (mean, high) in diffs.items():
        vs_today = {"mean": mean, "low": mean - 0.02, "high": high, "n": 9}
        effects[name] = {"gap_closed": cell, "vs_today": vs_today}
    recall = [{"name": "paragraph/k6/question/dense", "training": {"2": 0.4, "6": 0.7}}]
    likelihood = {"n": 9, "none": 1.2, "oracle": 1.1, "effects": effects}
    return {"persona": persona, "recall": recall, "training_likelihood": likelihood}


def test_the_default_is_chosen_by_training_likelihood_against_todays():
    from studies.retrieval_train import likelihood_choice

    paragraph, sentence = "paragraph/k6/question/dense", "sentence/k6/question/dense"
    # Paragraphs clearly better on one persona, unclear on the other; sentences better on
    # one and clearly worse on the other; the floor gate better on both but no retrieval.
    ines = record("ines", {paragraph: (-0.03, -0.01), sentence: (-0.05, -0.02)})
    sample = record("sample", {paragraph: (-0.01, 0.01), sentence: (0.04, 0.06)})
    ines["training_likelihood"]["effects"]["gate: similarity floor"] = {
        "gap_closed": None,
        "vs_today": {"mean": -0.2, "low": -0.3, "high": -0.1, "n": 9},
    }
    lines, chosen = likelihood_choice([ines, sample])
    assert chosen == paragraph
    row = next(line for line in lines if line.startswith(f"| {paragraph} |"))
    assert "-0.030 [-0.050, -0.010]" in row and "(spans 0)" in row and "0.40/0.70" in row
    # On the sample alone nothing is clearly better than today's: today's stays.
    _, chosen = likelihood_choice([sample])
    assert chosen == ""
