"""RATF metrics, loaded through `evaluate` from their local folders, and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from ratf.metrics import METRICS, load_metric
from ratf.stats import Interval, bootstrap_mean, paired_difference
from tests.tiny_persona import INTERVIEWS

ANSWER = (
    "Every Sunday I walk the canal from the lock to the gasworks and count herons. "
    "Seven is still the record."
)
PARAPHRASE = (
    "On Sundays I stroll along the canal between the lock and the old gasworks, counting "
    "the herons; I have never seen more than seven."
)
UNRELATED = "Quarterly revenue rose twelve percent on strong enterprise software licensing."

AUTHOR_TEXTS = [
    answer
    for name, interview in INTERVIEWS.items()
    if name.startswith("transcripts/")
    for _, answer in interview["exchanges"]
]
IN_MANNER = (
    "You don't own a starter; you keep faith with it. Gerald is older than my hives, and I "
    "give his offspring away. A city is a meadow if you count the window boxes."
)
LEGALESE = (
    "The Lessee shall indemnify the Lessor pursuant to Section 4(b) hereof, notwithstanding "
    "any provision herein to the contrary, and such obligation shall survive termination."
)
NOUNS = "Apple. Table. Chair. Window. Carpet. Bicycle. Lamp. Spoon. Kettle. Umbrella. Pencil."


@pytest.fixture(scope="module")
def semantic():
    """The semantic metric; MiniLM loads once, on first compute, and is reused."""
    return load_metric("semantic")


def test_every_metric_loads_through_evaluate_offline(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the folder is found next to the package, not from the cwd
    for name in METRICS:
        metric = load_metric(name)
        assert metric.name == name
        assert "predictions" in metric.features and "references" in metric.features
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("bleu")


@pytest.mark.parametrize("name", ["rouge_l", "chrf"])
def test_surface_metrics_score_identical_max_and_unrelated_low(name):
    result = load_metric(name).compute(
        predictions=[ANSWER, PARAPHRASE, UNRELATED], references=[ANSWER] * 3
    )
    identical, paraphrase, unrelated = result[name]
    assert identical == pytest.approx(1.0)
    assert unrelated < 0.2
    assert unrelated < paraphrase < identical
    assert result["mean"] == pytest.approx((identical + paraphrase + unrelated) / 3)


@pytest.mark.slow
def test_semantic_ranks_identical_over_paraphrase_over_unrelated(semantic):
    result = semantic.compute(predictions=[ANSWER, PARAPHRASE, UNRELATED], references=[ANSWER] * 3)
    identical, paraphrase, unrelated = result["semantic"]
    assert identical == pytest.approx(1.0, abs=1e-4)
    assert unrelated < 0.3 < paraphrase < identical
    assert result["mean"] == pytest.approx(np.mean(result["semantic"]))


@pytest.mark.slow
def test_semantic_accepts_a_model_path(semantic):
    from raft.backends.models import minilm_dir

    result = semantic.compute(predictions=[ANSWER], references=[ANSWER], model=minilm_dir())
    assert result["semantic"] == [pytest.approx(1.0, abs=1e-4)]


def test_style_prefers_the_authors_manner_over_other_registers():
    result = load_metric("style").compute(
        predictions=[IN_MANNER, LEGALESE, NOUNS],
        references=[ANSWER] * 3,
        author_texts=AUTHOR_TEXTS,
    )
    manner, legalese, nouns = result["style"]
    assert manner > legalese + 0.1
    assert manner > nouns + 0.1
    assert all(0.0 <= score <= 1.0 for score in result["style"])
    assert result["mean"] == pytest.approx(np.mean(result["style"]))


def test_style_reports_length_ratio_to_the_real_answer():
    result = load_metric("style").compute(
        predictions=[ANSWER, "Herons.", ""],
        references=[ANSWER, ANSWER, ANSWER],
        author_texts=AUTHOR_TEXTS,
    )
    assert result["length_ratio"] == [1.0, pytest.approx(1 / len(ANSWER.split())), 0.0]
    assert result["length_ratio_mean"] == pytest.approx(np.mean(result["length_ratio"]))
    assert result["style"][2] == 0.0  # an empty reply has nothing of the author in it


def test_style_refuses_to_run_without_author_texts():
    with pytest.raises(ValueError, match="author_texts"):
        load_metric("style").compute(predictions=[ANSWER], references=[ANSWER])


def test_bootstrap_interval_contains_the_mean_and_repeats_for_a_seed():
    values = np.random.default_rng(1).normal(0.5, 0.2, size=50)
    interval = bootstrap_mean(values, seed=7)
    assert interval.low < interval.mean < interval.high
    assert interval.mean == pytest.approx(values.mean())
    assert interval.n == 50
    assert bootstrap_mean(values, seed=7) == interval
    assert bootstrap_mean(values, seed=8) != interval


def test_bootstrap_interval_narrows_with_more_items():
    rng = np.random.default_rng(2)
    few = bootstrap_mean(rng.uniform(0, 1, size=20))
    many = bootstrap_mean(rng.uniform(0, 1, size=200))
    assert many.width < few.width / 2  # about 1/sqrt(10) as wide


def test_bootstrap_of_one_or_equal_values_has_no_width():
    assert bootstrap_mean([0.4]) == Interval(0.4, 0.4, 0.4, 1)
    assert bootstrap_mean([0.7] * 5) == Interval(0.7, 0.7, 0.7, 5)
    with pytest.raises(ValueError):
        bootstrap_mean([])


def test_paired_difference():
    scores = list(np.random.default_rng(3).uniform(0, 1, size=30))
    assert paired_difference(scores, scores) == Interval(0.0, 0.0, 0.0, 30)
    better = [s + 0.1 for s in scores]
    diff = paired_difference(better, scores)
    assert diff.mean == pytest.approx(0.1)
    assert diff.width == pytest.approx(0.0, abs=1e-12)  # pairing removes the item-to-item spread
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference(scores, scores[:-1])
