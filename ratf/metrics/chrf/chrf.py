"""Sentence-level chrF per item (sacrebleu), scaled to 0..1: `{"chrf": [...], "mean": x}`."""

import datasets
import evaluate

_DESCRIPTION = """chrF between each reply and the real answer: the F-score (beta 2) of
character n-grams up to 6, from sacrebleu's sentence-level CHRF, divided by 100. Robust to
inflection and short texts. 1 = identical, 0 = no character n-gram in common. Returns
`{"chrf": [per-item score], "mean": mean score}`."""

_CITATION = """@inproceedings{popovic-2015-chrf,
  title = {chr{F}: character n-gram {F}-score for automatic {MT} evaluation},
  author = {Popovi{\\'c}, Maja},
  booktitle = {Proceedings of the Tenth Workshop on Statistical Machine Translation},
  year = {2015},
  pages = {392--395}
}"""

_INPUTS = """
Args:
    predictions: the replica's replies, one string each.
    references: the real answers, aligned with `predictions`.
Returns:
    chrf: list of per-item chrF in [0, 1].
    mean: their mean.
"""


class Chrf(evaluate.Metric):
    """chrF per item, 0..1."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/mjpost/sacrebleu"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict:
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        scores = [
            chrf.sentence_score(pred, [ref]).score / 100.0
            for pred, ref in zip(predictions, references, strict=True)
        ]
        return {"chrf": scores, "mean": sum(scores) / len(scores) if scores else float("nan")}
