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
