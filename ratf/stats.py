"""Confidence intervals for RATF scores: percentile bootstrap of a mean, and of a paired mean."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Resampled indices are drawn in blocks of at most this many, to bound memory on long lists.
_BLOCK = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap confidence interval over `n` items."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def width(self) -> float:
        return self.high - self.low


def bootstrap_mean(
    values: Sequence[float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval for the mean of `values`, deterministic for a seed."""
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("bootstrap_mean needs a non-empty list of numbers")
    if not np.isfinite(data).all():
        raise ValueError("bootstrap_mean got NaN or infinite values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, not {n_resamples}")
    n, mean = data.size, float(data.mean())
    if n == 1 or (data == data[0]).all():
        return Interval(mean, mean, mean, n)
    rng = np.random.default_rng(seed)
    rows = max(1, _BLOCK // n)
    means = np.concatenate(
        [
            data[rng.integers(0, n, size=(min(rows, n_resamples - start), n))].mean(axis=1)
            for start in range(0, n_resamples, rows)
        ]
    )
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(mean, float(low), float(high), n)


def paired_difference(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Bootstrap interval for the mean of a_i - b_i, items resampled together (paired)."""
    if len(a) != len(b):
        raise ValueError(f"paired_difference needs equal lengths, got {len(a)} and {len(b)}")
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return bootstrap_mean(diffs, n_resamples=n_resamples, confidence=confidence, seed=seed)


def gap_closed(
    none: Sequence[float],
    retrieved: Sequence[float],
    oracle: Sequence[float],
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval | None:
    """The fraction of the oracle gap closed, (none − retrieved) / (none − oracle) of the
    means (1: as close as the ceiling, 0: no closer than no memories), with a percentile
    interval over items resampled together; None when the oracle gains nothing."""
    if not len(none) == len(retrieved) == len(oracle) > 0:
        raise ValueError("gap_closed needs three non-empty lists of equal length")
    gained = np.asarray(none, dtype=float) - np.asarray(retrieved, dtype=float)
    ceiling = np.asarray(none, dtype=float) - np.asarray(oracle, dtype=float)
    if ceiling.mean() == 0:
        return None
    mean, n = float(gained.mean() / ceiling.mean()), len(gained)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(n_resamples, n))
    below = ceiling[picks].mean(axis=1)
    ratios = gained[picks].mean(axis=1)[below != 0] / below[below != 0]
    if ratios.size == 0:
        return Interval(mean, mean, mean, n)
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return Interval(mean, float(low), float(high), n)
