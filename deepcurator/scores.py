"""From slice scores to a track's score: the aggregations, and the 0–100 label rule.

The server, ``rate`` and evaluation all aggregate with these (``serve.aggregation``), so a
track's score is defined once.
"""

from __future__ import annotations

import numpy as np

AGGREGATIONS = ("mean", "median", "topk")


def aggregate(scores: np.ndarray, method: str = "mean", top_k: int = 5) -> float:
    """A track's probability from its slices' probabilities ``scores`` (shape ``(n,)``, n ≥ 1):
    their mean, median, or the mean of the ``top_k`` highest."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no slice to aggregate")
    if method == "mean":
        return float(scores.mean())
    if method == "median":
        return float(np.median(scores))
    if method == "topk":
        return float(np.sort(scores)[::-1][: max(1, top_k)].mean())
    raise ValueError(f"unknown aggregation {method!r} (known: {', '.join(AGGREGATIONS)})")


def label_of(score: float) -> str:
    """``"good"`` over 50 (on the 0–100 scale), else ``"not-good"``."""
    return "good" if score > 50.0 else "not-good"
