"""RATF metrics as local `evaluate` modules, one folder each, loaded by path (no hub).

Every module's `compute(predictions=[...], references=[...], **kwargs)` returns
`{NAME: [per-item score, ...], "mean": mean of NAME}`, the list aligned with the predictions
so a caller can bootstrap it; higher always means closer to the real author. A module that
reports a second per-item series adds it as `{SERIES: [...], f"{SERIES}_mean": ...}` (only
`style`, with `length_ratio`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import evaluate

METRICS = ("rouge_l", "chrf", "semantic", "style")


def metric_dir(name: str) -> Path:
    """The folder of the evaluate module for metric `name`."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
    return Path(__file__).resolve().parent / name


def load_metric(name: str) -> evaluate.EvaluationModule:
    """Load a RATF metric through `evaluate` from its local folder, whatever the cwd."""
    import evaluate

    # keep_in_memory: the inputs are small, and no Arrow cache files pile up on disk
    return evaluate.load(str(metric_dir(name)), module_type="metric", keep_in_memory=True)
