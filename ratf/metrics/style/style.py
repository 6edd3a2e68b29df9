"""Stylometric similarity of each reply to the author, plus length ratio to the real answer.

Returns `{"style": [...], "mean": x, "length_ratio": [...], "length_ratio_mean": y}`.
"""

import re
from collections import Counter

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """How much each reply reads like the author, Burrows-style: from the author's
real answers (`author_texts`, e.g. every answer in the training interviews) a profile is built
of (a) the relative frequencies of a fixed list of English function words and (b) the relative
frequencies of the author's most frequent character 3-grams (spaces and punctuation included,
so habits like contractions, dashes and semicolons count). Each reply gets the same two
profiles; `style` is the mean of the two similarities, each the cosine of square-rooted
relative frequencies (the Hellinger / Bhattacharyya affinity), in [0, 1].

Why not Burrows' Delta (mean absolute difference of z-scores): replies are 20-200 words, so
most function words occur 0 or 1 times; z-scores need a per-feature spread from a reference
population of documents, which a handful of one-author answers cannot give (many features have
zero spread), and Delta is then dominated by noise in rare features. The square root is the
variance-stabilising transform for counts: it keeps "the" and "and" from dominating the
cosine without blowing up features the reply happens to lack, needs no reference corpus, is
bounded, and is 0 for text with none of the author's features (a list of nouns). Character
3-grams add signal where a short reply has only a few function words.

`length_ratio` is min(words in reply, words in answer) / max(...) per item: 1 = same length.
Returns `{"style": [per-item], "mean": mean style, "length_ratio": [per-item],
"length_ratio_mean": mean length ratio}`."""

_INPUTS = """
Args:
    predictions: the replica's replies, one string each.
    references: the real answers, aligned with `predictions` (used for `length_ratio`).
    author_texts: the author's own texts the profile is built from (required), e.g. the real
        answers of the training interviews; never the held-out answers.
    n_char_grams: how many of the author's most frequent character 3-grams to profile (300).
Returns:
    style: list of per-item similarities to the author's profile, in [0, 1].
    mean: mean style.
    length_ratio: list of per-item word-count ratios, in [0, 1].
    length_ratio_mean: mean length ratio.
"""

# Function words: articles, pronouns, auxiliaries, prepositions, conjunctions, common adverbs.
_FUNCTION_WORDS = """
    a about above after again against all also although am an and any are as at be because
    been before being below between both but by can could did do does doing down during each
    either even ever every few for from had has have having he her here hers herself him
    himself his how however i if in into is it its itself just least less many may me might
    more most much must my myself neither never no nor not now of off often on once one only
    or other our ours ourselves out over own perhaps quite rather really same shall she
    should since so some still such than that the their theirs them themselves then there
    therefore these they this those though through thus to too under until up upon us very
    was we were what when where whether which while who whom whose why will with within
    without would yet you your yours yourself
"""
FUNCTION_WORDS = tuple(_FUNCTION_WORDS.split())
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _char_grams(text: str) -> list[str]:
    flat = " ".join(text.lower().replace("\u2019", "'").split())
    return [flat[i : i + 3] for i in range(len(flat) - 2)]


def _profile(items: list[str], vocabulary: dict[str, int]) -> np.ndarray:
    """Relative frequencies of `vocabulary` among all `items` (tokens outside it count too)."""
    vector = np.zeros(len(vocabulary))
    for item, count in Counter(items).items():
        if item in vocabulary:
            vector[vocabulary[item]] = count
    return vector / max(len(items), 1)


def _affinity(p: np.ndarray, q: np.ndarray) -> float:
    """Cosine of square-rooted frequency vectors; 0 when either has none of the features."""
    p, q = np.sqrt(p), np.sqrt(q)
    norm = float(np.linalg.norm(p) * np.linalg.norm(q))
    return float(p @ q / norm) if norm > 0 else 0.0


def length_ratio(prediction: str, reference: str) -> float:
    """min/max of the two word counts; 1 when both are empty."""
    a, b = len(prediction.split()), len(reference.split())
    return min(a, b) / max(a, b) if max(a, b) else 1.0


class Style(evaluate.Metric):
    """Stylometric similarity to the author, and length ratio to the real answer."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[str],
        author_texts: list[str] | None = None,
        n_char_grams: int = 300,
    ) -> dict:
        if not author_texts or not any(text.strip() for text in author_texts):
            raise ValueError("style needs author_texts: the author's own answers to profile")
        words = {word: i for i, word in enumerate(FUNCTION_WORDS)}
        author_grams = [gram for text in author_texts for gram in _char_grams(text)]
        top = Counter(author_grams).most_common(n_char_grams)
        grams = {gram: i for i, (gram, _) in enumerate(top)}
        author_words = _profile([w for text in author_texts for w in _words(text)], words)
        author_chars = _profile(author_grams, grams)
        style = [
            (
                _affinity(_profile(_words(pred), words), author_words)
                + _affinity(_profile(_char_grams(pred), grams), author_chars)
            )
            / 2
            for pred in predictions
        ]
        ratios = [
            length_ratio(pred, ref) for pred, ref in zip(predictions, references, strict=True)
        ]
        return {
            "style": style,
            "mean": float(np.mean(style)) if style else float("nan"),
            "length_ratio": ratios,
            "length_ratio_mean": float(np.mean(ratios)) if ratios else float("nan"),
        }
