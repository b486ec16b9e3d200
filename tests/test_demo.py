"""The capstone: a reduced demo (24 tracks, one epoch) runs every stage end to end, the server
included, as `make demo` does; then each stage's outputs are checked in the store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from conftest import run_cli

TRACKS = 24


def test_reduced_demo_runs_every_stage(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = run_cli("demo", "--workdir", str(workdir), "--tracks", str(TRACKS), "--epochs", "1",
                   "--width", "0.125", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout

    corpus = workdir / "corpus"
    truth = pd.read_csv(corpus / "truth.csv", dtype={"youtube_id": str})
    assert len(truth) == TRACKS

    store = workdir / "store"
    labels = pd.read_csv(store / "labels.csv", dtype={"youtube_id": str})
    assert list(labels.columns) == ["youtube_id", "label"]
    assert labels["youtube_id"].is_unique and set(labels["label"]) == {0, 1}
    assert labels["label"].sum() == (labels["label"] == 0).sum()

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

    run_id = (store / "runs" / "latest").read_text().strip()
    run = store / "runs" / run_id
    for name in ("model.keras", "metrics.json", "MODEL_CARD.md", "splits.csv"):
        assert (run / name).is_file(), name
    assert list(run.glob("*.png"))
    metrics = json.loads((run / "metrics.json").read_text())
    auc = metrics["test"]["track"]["roc_auc"]
    assert 0.0 <= auc <= 1.0
    assert 0.0 <= metrics["baseline"]["test"]["track"]["roc_auc"] <= 1.0
    splits = pd.read_csv(run / "splits.csv", dtype={"youtube_id": str})
    assert set(splits["youtube_id"]) <= features

    # The server answered a POST of a held-out track with a score, and the demo printed it.
    score = re.search(r'"score": ([0-9.]+)', out)
    assert score and 0.0 <= float(score.group(1)) <= 100.0, out[-3000:]
    assert re.search(r'"run_id": "' + re.escape(run_id) + '"', out)

    # The model was exported to ./model (the demo's working directory here), labelled as the demo's.
    exported = json.loads((tmp_path / "model" / "model.json").read_text())
    assert exported["run_id"] == run_id and exported["synthetic_demo"] is True
    assert (tmp_path / "model" / "model.keras").read_bytes() == (run / "model.keras").read_bytes()
    assert metrics["data"]["synthetic_demo"] is True and "never heard real music" in (run / "MODEL_CARD.md").read_text()

    pictures = sorted(workdir.glob("*.png"))
    assert len(pictures) >= 1 and all(p.stat().st_size > 10_000 for p in pictures)
    assert "Demo finished" in out
