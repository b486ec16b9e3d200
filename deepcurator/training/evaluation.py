"""Scoring a model: predictions at slice and track level and the metrics of the report
(docs/REFERENCE.md, "Training and evaluation").

A track's score aggregates its slices' scores with the configured ``serve.aggregation``
(:func:`deepcurator.scores.aggregate`: mean, median or top-k mean), exactly as the server
computes it (the server reports it × 100; metrics use the 0..1 probability). The maths is in pure functions
of NumPy arrays; only :func:`predict` touches TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from deepcurator.training.data import SliceItems, make_dataset

N_BINS = 10


def predict(model: Any, items: SliceItems, batch_size: int) -> np.ndarray:
    """The model's probability of "good" for every slice of ``items``, float64 ``(n,)``."""
    if len(items) == 0:
        return np.zeros(0)
    scores = model.predict(make_dataset(items, batch_size, training=False), verbose=0)
    return np.asarray(scores, dtype=np.float64).reshape(-1)


def track_scores(slice_scores: np.ndarray, track: np.ndarray, n_tracks: int, aggregation: str = "mean",
                 top_k: int = 5) -> np.ndarray:
    """Track scores from slice scores: ``slice_scores`` ``(n,)`` with track rows ``track``
    ``(n,)`` → ``(n_tracks,)`` aggregated as the server does (NaN for a track with no slice)."""
    if aggregation == "mean":
        sums = np.bincount(track, weights=slice_scores, minlength=n_tracks)
        counts = np.bincount(track, minlength=n_tracks)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / counts
    from deepcurator.scores import aggregate

    out = np.full(n_tracks, np.nan)
    for t in np.unique(track):
        out[t] = aggregate(slice_scores[track == t], aggregation, top_k)
    return out


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS) -> dict[str, list[float]]:
    """Calibration: for each non-empty score bin of width 1/n_bins, the mean score, the
    fraction of "good" and the count (the reliability curve)."""
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    keep = np.bincount(bins, minlength=n_bins) > 0
    count = np.bincount(bins, minlength=n_bins)[keep]
    mean_score = np.bincount(bins, weights=p, minlength=n_bins)[keep] / count
    frac_good = np.bincount(bins, weights=y, minlength=n_bins)[keep] / count
    return {"mean_score": mean_score.round(6).tolist(), "fraction_good": frac_good.round(6).tolist(),
            "count": count.astype(int).tolist()}


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of scores ``p`` (0..1) against labels ``y`` (0/1), both ``(n,)``.

    accuracy at ``threshold``; ROC-AUC and PR-AUC (average precision), ``None`` when only one
    class is present; confusion ``[[tn, fp], [fn, tp]]``; Brier score; expected calibration
    error over :data:`N_BINS` bins and the reliability curve.
    """
    from sklearn.metrics import average_precision_score, brier_score_loss, confusion_matrix, roc_auc_score

    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    both = len(np.unique(y)) == 2
    curve = reliability(y, p)
    gaps = np.abs(np.subtract(curve["fraction_good"], curve["mean_score"]))
    ece = round(float(np.sum(gaps * curve["count"]) / max(1, len(y))), 6)
    return {
        "n": len(y),
        "n_good": int(y.sum()),
        "accuracy": float(np.mean((p >= threshold) == y)) if len(y) else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p, pos_label=1)) if len(y) else None,
        "ece": ece,
        "confusion": confusion_matrix(y, p >= threshold, labels=[0, 1]).tolist(),
        "reliability": curve,
    }


def level_scores(slice_scores: np.ndarray, items: SliceItems, index: pd.DataFrame, aggregation: str = "mean",
                 top_k: int = 5) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"slice": (y, p), "track": (y, p)}`` for one split's slices and tracks (tracks
    aggregated by ``aggregation``)."""
    p_track = track_scores(slice_scores, items.track, len(index), aggregation, top_k)
    scored = ~np.isnan(p_track)
    return {"slice": (items.label.astype(int), slice_scores),
            "track": (index["label"].to_numpy(int)[scored], p_track[scored])}


def level_metrics(levels: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict[str, Any]]:
    """:func:`binary_metrics` of each level of :func:`level_scores`."""
    return {level: binary_metrics(y, p) for level, (y, p) in levels.items()}
