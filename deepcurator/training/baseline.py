"""The baseline: logistic regression on per-band statistics of the log-mel.

Each 30-s slice becomes 256 numbers, the mean and the standard deviation over time of each
of its 128 mel bands (dB); a standardised logistic regression is fitted on the training
slices, its regularisation chosen on the validation slices, and it is scored at slice and
track level on the same splits as the CNN.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from deepcurator.training.data import SliceItems, read_window

C_GRID = (0.001, 0.01, 0.1, 1.0)


def band_stats(window: np.ndarray) -> np.ndarray:
    """Per-band mean and standard deviation over time: ``(128, frames[, 1])`` dB → ``(256,)``."""
    w = window.reshape(window.shape[0], -1).astype(np.float64)
    return np.concatenate([w.mean(axis=1), w.std(axis=1)])


def slice_features(items: SliceItems, workers: int = 4) -> np.ndarray:
    """:func:`band_stats` of every slice of ``items``: ``(n, 256)`` (read from disk, in parallel)."""
    if len(items) == 0:
        return np.zeros((0, 256))
    with ThreadPoolExecutor(workers) as pool:
        rows = pool.map(lambda a: band_stats(read_window(*a)), items.windows())
        return np.stack(list(rows))


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, seed: int) -> tuple[Any, float]:
    """The scaler + logistic regression with the C of :data:`C_GRID` giving the best
    validation ROC-AUC (the smallest C on ties or when validation has one class).
    Returns the fitted pipeline and its C."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best: tuple[float, Any, float] | None = None
    for c in C_GRID:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        model.fit(x_train, y_train)
        auc = roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]) if len(np.unique(y_val)) == 2 else 0.0
        if best is None or auc > best[0]:
            best = (auc, model, c)
    assert best is not None
    return best[1], best[2]
