"""The capstone: a reduced demo runs every stage end to end, the server included, as `make demo`
does; then each stage's outputs are checked in the store, and the README's claims about what
the demo shows are checked at the size this test can afford.

This test runs the demo at width 0.25 on 100 tracks (30 + 30 labelled; about 15 test
tracks) for 12 epochs: about 3 minutes on this project's 2-core machine before issue 13.
The thresholds below are explained beside them: since the corpus carries q in timing and
pitch only, what the test can demand is that the labels follow q, that the strong baseline
learns, that the band statistics do not, and that every figure comes with its interval.
Fewer tracks cannot test this: at 24 tracks the test split holds
4 tracks and the CNN's test ROC-AUC is 1.0 after one epoch at 0.5 accuracy; at 60 tracks and
8 epochs the CNN (20 training tracks) stayed at 0.69.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tests.helpers.cli import run_cli

TRACKS = 100
EPOCHS = 12
WIDTH = 0.25  # half the demo's 0.5, for time (the demo's global_max head)

LABELS_VS_Q_MIN = 0.95  # README: 0.995 on 200 tracks; 0.990 here (old corpus; labels depend on q, not on the faults)
# Since issue 13 the corpus carries q in the lead line's note order (and a little in its timing),
# the spectral faults independent of q (README, "The demo corpus"): statistics over frames barely
# see it (5-fold by track on 240 labelled tracks of seed 7: band statistics 0.573, the strong
# baseline 0.654), a CNN with the global_max head learns it from ~130 training tracks
# (bench/RESULTS.md, "Demo corpus"). This reduced demo (100 tracks, 30 labelled a class, ~30
# training tracks) is too small for the CNN to learn it, so the thresholds only check that
# every model runs and the CNN is not inverted far beyond chance. The strong baseline is near
# chance on this corpus, and with ~16 test tracks (~64 good/not-good pairs, an AUC's standard
# error near 0.1) its AUC fell to 0.14 in one run: it gets no lower bound.
CNN_TEST_MIN = 0.3
BAND_BASELINE_TEST_MAX = 0.97


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_reduced_demo_runs_every_stage_and_learns(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = run_cli("demo", "--workdir", str(workdir), "--tracks", str(TRACKS), "--epochs", str(EPOCHS),
                   "--width", str(WIDTH), cwd=tmp_path, timeout=1400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout

    # demo-corpus and labels: the labelled tracks are the good and the bad ones by hidden quality.
    corpus = workdir / "corpus"
    truth = pd.read_csv(corpus / "truth.csv", dtype={"youtube_id": str})
    assert len(truth) == TRACKS
    store = workdir / "store"
    labels = pd.read_csv(store / "labels.csv", dtype={"youtube_id": str})
    assert list(labels.columns) == ["youtube_id", "label"]
    assert labels["youtube_id"].is_unique and set(labels["label"]) == {0, 1}
    assert labels["label"].sum() == (labels["label"] == 0).sum() == round(0.3 * TRACKS)
    q = labels.merge(truth[["youtube_id", "q"]], on="youtube_id", validate="one_to_one")
    assert len(q) == len(labels)
    assert roc_auc_score(q["label"], q["q"]) >= LABELS_VS_Q_MIN

    # download and process: every labelled id is stored, or logged as failed, never both.
    labelled = set(labels["youtube_id"])
    audio = {p.stem for p in (store / "audio").iterdir()}
    features = {p.stem for p in (store / "features").glob("*.npy")}
    failed = set()
    for stage in ("download", "process"):
        log = store / "failures" / f"{stage}.jsonl"
        if log.exists():
            failed |= {json.loads(line)["id"] for line in log.read_text().splitlines() if line}
    assert audio | failed >= labelled and audio <= labelled
    assert features <= audio and features | failed >= labelled
    assert len(features) >= 0.9 * len(labelled)
    S = np.load(store / "features" / f"{sorted(features)[0]}.npy")
    assert S.dtype == np.float16 and S.shape[0] == 128 and np.isfinite(S).all()

    # train and evaluate: the run's files, then its numbers.
    run_id = (store / "runs" / "latest").read_text().strip()
    run = store / "runs" / run_id
    for name in ("model.keras", "metrics.json", "MODEL_CARD.md", "splits.csv", "predictions.csv"):
        assert (run / name).is_file(), name
    assert {p.name for p in run.glob("*.png")} >= {"roc.png", "training_curves.png"}
    splits = pd.read_csv(run / "splits.csv", dtype={"youtube_id": str})
    assert set(splits["youtube_id"]) <= features
    test_split = splits[splits["split"] == "test"]
    assert set(test_split["label"]) == {0, 1} and len(test_split) >= 8  # keyed-hash splits: ~15 ± 3

    metrics = json.loads((run / "metrics.json").read_text())
    cnn = metrics["test"]["track"]["roc_auc"]
    baseline = metrics["baseline"]["test"]["track"]["roc_auc"]
    assert cnn >= CNN_TEST_MIN, metrics["test"]
    assert baseline <= BAND_BASELINE_TEST_MAX, metrics["baseline"]["test"]
    strong_test = metrics["strong_baseline"]["test"]["track"]
    assert 0.0 <= strong_test["roc_auc"] <= 1.0, strong_test

    # The metrics are what they say: recomputed from the per-track predictions of the test split.
    predictions = pd.read_csv(run / "predictions.csv", dtype={"youtube_id": str})
    test = predictions[predictions["split"] == "test"]
    assert set(test["youtube_id"]) == set(test_split["youtube_id"])
    assert roc_auc_score(test["label"], test["score"]) == pytest.approx(cnn, abs=1e-3)
    assert roc_auc_score(test["label"], test["baseline_score"]) == pytest.approx(baseline, abs=1e-3)

    # both baselines, bootstrap intervals around every test AUC and the paired differences
    strong = metrics["strong_baseline"]["test"]["track"]["roc_auc"]
    assert roc_auc_score(test["label"], test["strong_baseline_score"]) == pytest.approx(strong, abs=1e-3)
    boot = metrics["intervals"]
    assert boot["resamples"] >= 2000 and boot["used"] > 1900
    lo, hi = boot["models"]["CNN"]["roc_auc"]
    assert lo <= cnn <= hi
    assert set(boot["differences"]) == {"CNN − band-statistics baseline", "CNN − strong baseline"}
    assert metrics["aggregation"]["method"] == "mean"
    assert metrics["test_scored"]["times"] == 2  # once at the end of train, once by evaluate
    card = (run / "MODEL_CARD.md").read_text()
    assert "The data is synthetic" in card and "has been scored 2 times" in card

    # train, evaluate (from the store) and the final summary report the same test ROC-AUC.
    assert f"test tracks ROC-AUC {cnn:.3f}" in out, out[-5000:]
    assert re.search(rf"test tracks n={len(test)}: ROC-AUC {cnn:.3f} .*\(baseline ROC-AUC {baseline:.3f}\)", out)
    assert re.search(rf"    CNN: test tracks n={len(test)} ROC-AUC {cnn:.3f} \[", out)
    assert re.search(rf"    band-statistics baseline: test tracks n={len(test)} ROC-AUC {baseline:.3f} \[", out)
    assert re.search(rf"    strong baseline: test tracks n={len(test)} ROC-AUC {strong:.3f} \[", out)
    assert "    CNN − strong baseline: ROC-AUC " in out

    # serve: a held-out track POSTed to the running server gets the score evaluation gave it.
    posted = re.search(r"curl -X POST -F audio=@(\S+) ", out)
    score = re.search(r'"score": ([0-9.]+)', out)
    assert posted and score, out[-3000:]
    youtube_id = Path(posted.group(1)).stem
    assert youtube_id in set(test_split["youtube_id"])
    expected = float(test.loc[test["youtube_id"] == youtube_id, "score"].iloc[0])
    assert float(score.group(1)) == pytest.approx(expected, abs=0.05)
    assert re.search(r'"run_id": "' + re.escape(run_id) + '"', out)

    # The model was exported to ./model (the demo's working directory here), labelled as the demo's.
    exported = json.loads((tmp_path / "model" / "model.json").read_text())
    assert exported["run_id"] == run_id and exported["synthetic_demo"] is True
    assert (tmp_path / "model" / "model.keras").read_bytes() == (run / "model.keras").read_bytes()
    assert metrics["data"]["synthetic_demo"] is True and "never heard real music" in (run / "MODEL_CARD.md").read_text()

    pictures = sorted(workdir.glob("*.png"))
    assert {p.name for p in pictures} == {"spectrogram_high_q.png", "spectrogram_low_q.png"}
    assert all(p.stat().st_size > 10_000 for p in pictures)
    assert "Demo finished" in out
