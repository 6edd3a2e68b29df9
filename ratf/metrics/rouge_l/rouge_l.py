"""ROUGE-L F1 per item (rouge-score, Porter stemming): `{"rouge_l": [...], "mean": x}`."""

import datasets
import evaluate

_DESCRIPTION = """ROUGE-L F1 between each reply and the real answer, from the longest common
subsequence of (stemmed, lower-cased) words. 1 = same words in the same order, 0 = no word in
common. Returns `{"rouge_l": [per-item F1], "mean": mean F1}`."""

_CITATION = """@inproceedings{lin-2004-rouge,
  title = {{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author = {Lin, Chin-Yew},
  booktitle = {Text Summarization Branches Out},
  year = {2004},
  pages = {74--81}
}"""

_INPUTS = """
Args:
    predictions: the replica's replies, one string each.
    references: the real answers, aligned with `predictions`.
Returns:
    rouge_l: list of per-item ROUGE-L F1 in [0, 1].
    mean: their mean.
Example:
    >>> load_metric("rouge_l").compute(predictions=["a b c"], references=["a b c"])
    {'rouge_l': [1.0], 'mean': 1.0}
"""


class RougeL(evaluate.Metric):
    """ROUGE-L F1 per item."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
        scores = [
            float(scorer.score(target=ref, prediction=pred)["rougeL"].fmeasure)
            for pred, ref in zip(predictions, references, strict=True)
        ]
        return {"rouge_l": scores, "mean": sum(scores) / len(scores) if scores else float("nan")}
