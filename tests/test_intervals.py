"""Bootstrap intervals over tracks, and track scores aggregated as the server aggregates them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from deepcurator.scores import aggregate
from deepcurator.summary import summary_lines
from deepcurator.training.evaluation import track_scores
from deepcurator.training.intervals import _pr_auc, _roc_auc, bootstrap


def test_vectorised_aucs_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 40)
        p = np.round(y + rng.normal(0, 1, 40), 1)  # rounding makes ties
        assert _roc_auc(y[None], p[None])[0] == pytest.approx(roc_auc_score(y, p))
        q = y + rng.normal(0, 1, 40)  # average precision: no ties
        assert _pr_auc(y[None], q[None])[0] == pytest.approx(average_precision_score(y, q))


def test_intervals_cover_the_estimate_shrink_with_n_and_pair_the_differences() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for n in (40, 400):
        y = rng.integers(0, 2, n)
        good, bad = y + rng.normal(0, 0.8, n), y + rng.normal(0, 3, n)
        out = bootstrap(y, {"a": good, "b": bad}, pairs=[("a", "b")], seed=0)
        assert out["resamples"] == 2000 and out["used"] == 2000
        lo, hi = out["models"]["a"]["roc_auc"]
        assert lo < roc_auc_score(y, good) < hi
        d = out["differences"]["a − b"]["roc_auc"]
        assert d["estimate"] == pytest.approx(roc_auc_score(y, good) - roc_auc_score(y, bad), abs=1e-4)
        assert d["interval"][0] < d["estimate"] < d["interval"][1]
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2
    # the same model against itself: a paired difference of exactly 0
    same = bootstrap(y, {"a": good, "a2": good.copy()}, pairs=[("a", "a2")])
    assert same["differences"]["a − a2"]["roc_auc"]["interval"] == [0.0, 0.0]
    assert bootstrap(np.ones(5), {"a": np.arange(5.0)})["models"] == {}  # one class: no interval


def test_track_scores_use_the_served_aggregation() -> None:
    p = np.array([0.1, 0.2, 0.9, 0.5, 0.6, 0.7])
    track = np.array([0, 0, 0, 1, 1, 1])
    for method in ("mean", "median", "topk"):
        got = track_scores(p, track, 3, method, top_k=2)
        assert got[0] == pytest.approx(aggregate(p[:3], method, 2)) and np.isnan(got[2])
    assert track_scores(p, track, 2, "topk", top_k=1)[0] == 0.9


def test_summary_lines_show_every_model_with_its_interval() -> None:
    m = {"track": {"n": 10, "roc_auc": 0.8, "pr_auc": 0.7}}
    metrics = {"test": m, "baseline": {"test": m}, "strong_baseline": {"test": m},
               "intervals": {"resamples": 2000, "used": 1999, "models": {
                   "CNN": {"roc_auc": [0.6, 0.9], "pr_auc": [0.5, 0.9]}},
                   "differences": {"CNN − strong baseline": {"roc_auc": {"estimate": 0.0, "interval": [-0.1, 0.1]},
                                                             "pr_auc": {"estimate": 0.0, "interval": [-0.2, 0.2]}}}}}
    lines = summary_lines(metrics)
    assert lines[0] == "CNN: test tracks n=10 ROC-AUC 0.800 [0.600, 0.900], PR-AUC 0.700 [0.500, 0.900]"
    assert lines[1].startswith("band-statistics baseline: test tracks n=10 ROC-AUC 0.800 n/a")
    assert lines[3] == "CNN − strong baseline: ROC-AUC +0.000 [-0.100, 0.100], PR-AUC +0.000 [-0.200, 0.200]"
