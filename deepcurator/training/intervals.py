"""Bootstrap intervals over tracks for ROC-AUC and PR-AUC, and for paired differences.

Tracks are resampled with replacement (:data:`RESAMPLES` times, seeded); every model is
scored on the same resamples, so the interval of a difference "model A − model B" is
paired: it reflects how the two rank the same tracks, not two independent draws. The
interval is the 2.5th–97.5th percentile of the resampled values (percentile bootstrap);
resamples holding one class only are skipped (and counted). Pure NumPy, vectorised over
resamples: ROC-AUC from average ranks (Mann–Whitney), PR-AUC as average precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

RESAMPLES = 2000
LEVEL = 0.95


def _roc_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row: ``y`` 0/1 and ``p`` scores, both ``(B, n)`` → ``(B,)`` (ties count ½)."""
    ranks = rankdata(p, axis=1)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _pr_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Average precision of each row (scores sorted descending; ties in the sort's order)."""
    order = np.argsort(-p, axis=1, kind="stable")
    ys = np.take_along_axis(y, order, axis=1)
    precision = np.cumsum(ys, axis=1) / np.arange(1, y.shape[1] + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (precision * ys).sum(axis=1) / ys.sum(axis=1)


def _interval(values: np.ndarray) -> list[float]:
    lo, hi = np.percentile(values, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return [round(float(lo), 4), round(float(hi), 4)]


def bootstrap(y: np.ndarray, scores: dict[str, np.ndarray], pairs: list[tuple[str, str]] | None = None,
              resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """95 % percentile-bootstrap intervals of the ROC-AUC and PR-AUC of every model in
    ``scores`` (name → track scores ``(n,)``, aligned with labels ``y`` ``(n,)``) and of the
    paired differences ``a − b`` for each ``(a, b)`` in ``pairs``.

    Returns ``{"resamples": B, "used": B', "level": 0.95, "models": {name: {"roc_auc": [lo, hi],
    "pr_auc": [lo, hi]}}, "differences": {"a − b": {"roc_auc": {"estimate", "interval"},
    "pr_auc": {...}}}}``; intervals are None when ``y`` holds one class.
    """
    y = np.asarray(y, dtype=np.int64)
    n = len(y)
    out: dict[str, Any] = {"resamples": resamples, "used": 0, "level": LEVEL, "unit": "tracks",
                           "models": {}, "differences": {}}
    if n == 0 or len(np.unique(y)) < 2:
        return out
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    yb = y[idx]
    ok = (yb.sum(axis=1) > 0) & (yb.sum(axis=1) < n)
    idx, yb = idx[ok], yb[ok]
    out["used"] = int(ok.sum())
    boot: dict[str, dict[str, np.ndarray]] = {}
    point: dict[str, dict[str, float]] = {}
    for name, p in scores.items():
        p = np.asarray(p, dtype=np.float64)
        pb = p[idx]
        boot[name] = {"roc_auc": _roc_auc(yb, pb), "pr_auc": _pr_auc(yb, pb)}
        point[name] = {"roc_auc": float(_roc_auc(y[None], p[None])[0]), "pr_auc": float(_pr_auc(y[None], p[None])[0])}
        out["models"][name] = {m: _interval(v) for m, v in boot[name].items()}
    for a, b in pairs or []:
        out["differences"][f"{a} − {b}"] = {
            m: {"estimate": round(point[a][m] - point[b][m], 4), "interval": _interval(boot[a][m] - boot[b][m])}
            for m in ("roc_auc", "pr_auc")}
    return out
