"""Evaluating a saved run: metrics, baseline, plots and model card, written into the run.

``deepcurator train`` calls :func:`evaluate_run` when training ends and
``deepcurator evaluate RUN`` calls it again on the stored run; both read only the store
(``model.keras``, ``splits.csv``, ``config.yml``, ``state.json``), so they write the same
``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepcurator import plots, runs, shipped
from deepcurator.config import Config
from deepcurator.scratch import scratch_dir
from deepcurator.store import Store
from deepcurator.training import baseline
from deepcurator.training.data import build_index, fixed_slices
from deepcurator.training.evaluation import level_metrics, level_scores, predict, track_scores
from deepcurator.training.splits import class_balance


def evaluate_run(cfg: Config, store: Store, run_id: str) -> dict[str, Any]:
    """Score the run's model and the baseline on its val and test splits; write
    ``metrics.json``, ``predictions.csv``, the PNGs and ``MODEL_CARD.md`` into the run.
    Returns the metrics."""
    import keras

    tc = runs.read_train_config(store, run_id)
    state = runs.read_state(store, run_id) or {}
    splits = runs.read_splits(store, run_id)
    trained_on, synthetic = shipped.trained_on(runs.read_config(store, run_id))
    with scratch_dir("eval") as tmp:
        store.get_file(runs.key(run_id, runs.MODEL), Path(tmp) / runs.MODEL)
        model = keras.saving.load_model(Path(tmp) / runs.MODEL)
    index = build_index(store, splits, Path(cfg.train.cache_dir) if cfg.train.cache_dir else None)
    parts = {name: index[index["split"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    items = {name: fixed_slices(part) for name, part in parts.items()}

    cnn = {name: level_scores(predict(model, items[name], tc.batch_size), items[name], parts[name])
           for name in ("val", "test")}
    stats = {name: baseline.slice_features(items[name]) for name in items}
    lr, c = baseline.fit(stats["train"], items["train"].label, stats["val"], items["val"].label, tc.seed)
    base = {name: level_scores(lr.predict_proba(stats[name])[:, 1], items[name], parts[name])
            for name in ("val", "test")}

    metrics: dict[str, Any] = {
        "run_id": run_id,
        "model": {"width": tc.width, "params": int(model.count_params())},
        "data": {"trained_on": trained_on, "synthetic_demo": synthetic,
                 "class_balance": class_balance(splits),
                 "slices": {name: len(items[name]) for name in items},
                 "tracks_with_features": {name: len(parts[name]) for name in parts}},
        "training": {k: state.get(k) for k in ("epoch", "best_epoch", "best_val_roc_auc", "bad_epochs",
                                               "steps_per_epoch", "global_batch", "calibration")},
        "val": level_metrics(cnn["val"]),
        "test": level_metrics(cnn["test"]),
        "baseline": {"model": "standardised logistic regression on per-band mean and std of the log-mel (256 features)",
                     "C": c, "val": level_metrics(base["val"]), "test": level_metrics(base["test"])},
    }
    runs.write_json(store, runs.key(run_id, "metrics.json"), metrics)
    store.put_bytes(runs.key(run_id, "predictions.csv"), _predictions(parts, items, cnn, base).encode())
    if state.get("history"):
        store.put_bytes(runs.key(run_id, "training_curves.png"), plots.training_curves(state["history"]))
    store.put_bytes(runs.key(run_id, "roc.png"), plots.roc_curves({"CNN": cnn["test"], "baseline": base["test"]}))
    store.put_bytes(runs.key(run_id, "score_histograms.png"), plots.class_histograms(cnn["test"]))
    store.put_bytes(runs.key(run_id, "reliability.png"), plots.reliability_diagram({
        f"CNN {level}s": metrics["test"][level]["reliability"] for level in ("slice", "track")}
        | {"baseline tracks": metrics["baseline"]["test"]["track"]["reliability"]}))
    store.put_bytes(runs.key(run_id, "MODEL_CARD.md"), model_card(metrics, tc.__dict__, state).encode())
    return metrics


def _synthetic_note(synthetic: bool | None) -> str:
    if not synthetic:
        return ""
    return (" **This model has never heard real music**: the corpus is synthesised and its Discogs\n"
            "statistics made up, so its scores say nothing about real tracks (model/README.md says how the real\n"
            "model is made).")


def _calibration_line(cal: dict | None) -> str:
    if not cal:
        return "The scores are the network's raw outputs (no calibration)."
    return (f"The scores are calibrated by {cal['method']}: sigmoid({cal['a']:.3f}·z + {cal['c']:.3f}) of the "
            "network's logit z, folded into its last layer, so that 50 is the validation split's even odds.")


def _predictions(parts: dict[str, pd.DataFrame], items: dict, cnn: dict, base: dict) -> str:
    """``youtube_id,split,label,slices,score,baseline_score``: track scores (0..100) of val and test."""
    rows = []
    for name in ("val", "test"):
        part, it = parts[name], items[name]
        cnn_p = track_scores(cnn[name]["slice"][1], it.track, len(part))
        base_p = track_scores(base[name]["slice"][1], it.track, len(part))
        rows.append(pd.DataFrame({"youtube_id": part["youtube_id"], "split": name, "label": part["label"],
                                  "slices": np.bincount(it.track, minlength=len(part)),
                                  "score": np.round(cnn_p * 100, 3), "baseline_score": np.round(base_p * 100, 3)}))
    return pd.concat(rows).to_csv(index=False)


def _row(name: str, m: dict[str, Any]) -> str:
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731 - a one-line formatter, local to this row
    (tn, fp), (fn, tp) = m["confusion"]
    return (f"| {name} | {m['n']} | {f(m['accuracy'])} | {f(m['roc_auc'])} | {f(m['pr_auc'])} | {f(m['brier'])} "
            f"| {f(m['ece'])} | {tn} / {fp} / {fn} / {tp} |")


def model_card(metrics: dict[str, Any], train_config: dict[str, Any], state: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` of a run: data, labels, configuration, metrics, intended use, caveats."""
    bal = metrics["data"]["class_balance"]
    slices = metrics["data"]["slices"]
    table = ["| model, level | n | accuracy | ROC-AUC | PR-AUC | Brier | ECE | confusion tn / fp / fn / tp |",
             "|---|---|---|---|---|---|---|---|"]
    for split in ("test", "val"):
        for level in ("track", "slice"):
            table.append(_row(f"CNN, {split} {level}s", metrics[split][level]))
            table.append(_row(f"baseline, {split} {level}s", metrics["baseline"][split][level]))
    config_lines = "\n".join(f"- `train.{k}`: {v}" for k, v in train_config.items() if k != "cache_dir")
    return f"""# Model card: DeepCurator run `{metrics['run_id']}`

## What it is
A convolutional network (after Choi et al. 2016: five Conv–BatchNorm–ReLU–MaxPool–Dropout
blocks, Dense 50, sigmoid; width ×{metrics['model']['width']}, {metrics['model']['params']:,} parameters)
that reads 30-s log-mel slices (128 mel bands × 1,291 frames, dB) and outputs the probability
that a track is in the "good" class. A track's score is the mean of its slices' scores × 100.

## Data and labels
Trained on {metrics['data'].get('trained_on', 'unknown')}.{_synthetic_note(metrics['data'].get('synthetic_demo'))}
Labels come from Discogs statistics of the releases that link each YouTube video: the
want/have ratio, the Bayesian-weighted rating and the price, combined into one score; the
top N ids are "good" (1), the bottom N "not-good" (0). Splits are by track (no track has
slices in two splits), seeded and stratified by label:

| split | tracks | good | not-good | slices |
|---|---|---|---|---|
""" + "\n".join(f"| {s} | {b['tracks']} | {b['good']} | {b['not_good']} | {slices[s]} |" for s, b in bal.items()) + f"""

## Training
Best epoch {state.get('best_epoch')} of {state.get('epoch')} by validation slice ROC-AUC
({_opt(state.get('best_val_roc_auc'))}); hyper-parameters were chosen on the validation split only, and the
test split was scored once at the end. {_calibration_line(state.get('calibration'))}

{config_lines}

## Metrics
Accuracy at a 0.5 threshold; PR-AUC is average precision; ECE is the expected calibration
error over 10 score bins (see `reliability.png`). The baseline is a standardised logistic
regression on the per-band mean and standard deviation of each slice's log-mel
(C = {metrics['baseline']['C']}, chosen on validation), trained and scored on the same splits.

{chr(10).join(table)}

Plots: `training_curves.png`, `roc.png` (with the baseline's curve), `score_histograms.png`,
`reliability.png`. Per-track scores: `predictions.csv`.

## Intended use
Ranking or triaging electronic-music tracks by how likely their releases are to be
**sought-after on Discogs** (wanted, well rated, expensive), from the sound alone: a
research tool and a second opinion for curators, diggers and labels.

## Caveats
- The label measures popularity and scarcity on one marketplace, not quality: "what will be
  sought-after on Discogs", not "good". Rare pressings, hype, label reputation and collector
  fashions drive want/have ratios and prices; the model can only pick up what of that is
  audible, and it inherits every bias of Discogs' user base (genres, eras, regions).
- Only the top and bottom of the ranking are labelled; tracks from the middle are out of
  distribution, and a score near 50 does not mean "average".
- Audio comes from YouTube uploads (varying quality, edits, possibly the wrong track); a
  video linked from several releases takes the highest score among them.
- Scores are not calibrated probabilities of anything outside this label definition; check
  `reliability.png` before reading them as such.
"""


def _opt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
