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
from deepcurator.training.evaluation import binary_metrics, level_metrics, level_scores, predict
from deepcurator.training.splits import class_balance

MODELS = ("CNN", "band-statistics baseline", "strong baseline")
TEST_COUNT = "test_scored.json"  # how many times the test split has been scored, and when


def count_test_scoring(store: Store, run_id: str) -> dict[str, Any]:
    """Record one more scoring of the run's test split (``runs/<id>/test_scored.json``):
    ``{"times": n, "at": [UTC times]}`` after this one."""
    import datetime as dt
    import json

    k = runs.key(run_id, TEST_COUNT)
    record: dict[str, Any] = json.loads(store.get_bytes(k)) if store.exists(k) else {"times": 0, "at": []}
    record["times"] += 1
    record["at"].append(dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    runs.write_json(store, k, record)
    return record


def _labels_report(store: Store) -> dict[str, Any] | None:
    import json

    from deepcurator import layout

    return json.loads(store.get_bytes(layout.LABELS_REPORT)) if store.exists(layout.LABELS_REPORT) else None


def evaluate_run(cfg: Config, store: Store, run_id: str) -> dict[str, Any]:
    """Score the run's model and both baselines on its val and test splits, tracks aggregated
    with ``serve.aggregation`` (the other aggregations reported beside); bootstrap intervals
    over test tracks; count this scoring of the test split; write ``metrics.json``,
    ``predictions.csv``, the PNGs and ``MODEL_CARD.md`` into the run. Returns the metrics."""
    import keras

    from deepcurator.scores import AGGREGATIONS
    from deepcurator.training import intervals, mir_baseline

    tc = runs.read_train_config(store, run_id)
    state = runs.read_state(store, run_id) or {}
    splits = runs.read_splits(store, run_id)
    agg, top_k = cfg.serve.aggregation, cfg.serve.top_k
    trained_on, synthetic = shipped.trained_on(runs.read_config(store, run_id))
    with scratch_dir("eval") as tmp:
        store.get_file(runs.key(run_id, runs.MODEL), Path(tmp) / runs.MODEL)
        model = keras.saving.load_model(Path(tmp) / runs.MODEL)
    index = build_index(store, splits, Path(cfg.train.cache_dir) if cfg.train.cache_dir else None)
    parts = {name: index[index["split"] == name].reset_index(drop=True) for name in ("train", "val", "test")}
    items = {name: fixed_slices(part) for name, part in parts.items()}

    slice_p: dict[str, dict[str, np.ndarray]] = {m: {} for m in MODELS}
    for name in ("val", "test"):
        slice_p["CNN"][name] = predict(model, items[name], tc.batch_size)
    stats = {name: baseline.slice_features(items[name]) for name in items}
    lr, c = baseline.fit(stats["train"], items["train"].label, stats["val"], items["val"].label, tc.seed)
    mir = {name: mir_baseline.slice_features(items[name]) for name in items}
    gbt, setting = mir_baseline.fit(mir["train"], items["train"].label, mir["val"], items["val"].label, tc.seed)
    for name in ("val", "test"):
        slice_p["band-statistics baseline"][name] = lr.predict_proba(stats[name])[:, 1]
        slice_p["strong baseline"][name] = gbt.predict_proba(mir[name])[:, 1]
    levels = {m: {name: level_scores(slice_p[m][name], items[name], parts[name], agg, top_k)
                  for name in ("val", "test")} for m in MODELS}
    cnn, base, strong = (levels[m] for m in MODELS)
    y_test = cnn["test"]["track"][0]
    boot = intervals.bootstrap(y_test, {m: levels[m]["test"]["track"][1] for m in MODELS},
                               pairs=[("CNN", "band-statistics baseline"), ("CNN", "strong baseline")], seed=tc.seed)
    others: dict[str, dict[str, dict[str, float | None]]] = {}
    for method in AGGREGATIONS:
        others[method] = {}
        for m in MODELS:
            y, p = level_scores(slice_p[m]["test"], items["test"], parts["test"], method, top_k)["track"]
            mm = binary_metrics(y, p)
            others[method][m] = {"roc_auc": mm["roc_auc"], "pr_auc": mm["pr_auc"]}
    scored = count_test_scoring(store, run_id)

    metrics: dict[str, Any] = {
        "run_id": run_id,
        "model": {"width": tc.width, "head": tc.head, "params": int(model.count_params())},
        "data": {"trained_on": trained_on, "synthetic_demo": synthetic,
                 "class_balance": class_balance(splits),
                 "slices": {name: len(items[name]) for name in items},
                 "tracks_with_features": {name: len(parts[name]) for name in parts},
                 "labels": _labels_report(store)},
        "training": {k: state.get(k) for k in ("epoch", "best_epoch", "best_val_roc_auc", "bad_epochs",
                                               "steps_per_epoch", "global_batch", "calibration")},
        "aggregation": {"method": agg, "top_k": top_k, "test_tracks_by_aggregation": others},
        "test_scored": scored,
        "val": level_metrics(cnn["val"]),
        "test": level_metrics(cnn["test"]),
        "baseline": {"model": "standardised logistic regression on per-band mean and std of the log-mel (256 features)",
                     "C": c, "val": level_metrics(base["val"]), "test": level_metrics(base["test"])},
        "strong_baseline": {"model": "gradient-boosted trees (scikit-learn HistGradientBoosting) on "
                                     f"{mir_baseline.N_FEATURES} MFCC, spectral-contrast, chroma, onset and tempo "
                                     "features of the log-mel",
                            "setting": setting, "val": level_metrics(strong["val"]),
                            "test": level_metrics(strong["test"])},
        "intervals": boot,
    }
    runs.write_json(store, runs.key(run_id, "metrics.json"), metrics)
    store.put_bytes(runs.key(run_id, "predictions.csv"), _predictions(parts, levels).encode())
    if state.get("history"):
        store.put_bytes(runs.key(run_id, "training_curves.png"), plots.training_curves(state["history"]))
    store.put_bytes(runs.key(run_id, "roc.png"), plots.roc_curves({m: levels[m]["test"] for m in MODELS}))
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


def _settings_line(synthetic: bool | None) -> str:
    """Where the run's settings came from, and what that does to its test rows."""
    if synthetic:
        return ("The settings below were fixed before this run, but the demo's (head, width, epochs, corpus\n"
                "size) were chosen on held-out tracks of the demo's default corpus (seed 7) in earlier benchmark\n"
                "runs: on that corpus they overlap this run's test split, whose rows are then optimistic too.\n"
                "The clean estimate is a corpus of a seed never used while tuning (bench/RESULTS.md, \"Demo corpus\").")
    return "The settings below were fixed before this run."


def _calibration_line(cal: dict | None) -> str:
    if not cal:
        return "The scores are the network's raw outputs (no calibration)."
    return (f"The scores are calibrated by {cal['method']}: sigmoid({cal['a']:.3f}·z + {cal['c']:.3f}) of the "
            "network's logit z, folded into its last layer, so that 50 is the validation split's even odds.")


def _predictions(parts: dict[str, pd.DataFrame], levels: dict[str, dict]) -> str:
    """``youtube_id,split,label,score,baseline_score,strong_baseline_score``: track scores
    (0..100) of val and test, aggregated as evaluated."""
    rows = []
    for name in ("val", "test"):
        part = parts[name]
        cnn_y, cnn_p = levels["CNN"][name]["track"]
        rows.append(pd.DataFrame({  # every indexed track has a slice (build_index), so rows align
            "youtube_id": part["youtube_id"], "split": name, "label": cnn_y,
            "score": np.round(cnn_p * 100, 3),
            "baseline_score": np.round(levels["band-statistics baseline"][name]["track"][1] * 100, 3),
            "strong_baseline_score": np.round(levels["strong baseline"][name]["track"][1] * 100, 3)}))
    return pd.concat(rows).to_csv(index=False)


def _row(name: str, m: dict[str, Any]) -> str:
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731 - a one-line formatter, local to this row
    (tn, fp), (fn, tp) = m["confusion"]
    return (f"| {name} | {m['n']} | {f(m['accuracy'])} | {f(m['roc_auc'])} | {f(m['pr_auc'])} | {f(m['brier'])} "
            f"| {f(m['ece'])} | {tn} / {fp} / {fn} / {tp} |")


def _source_line(labels: dict[str, Any] | None) -> str:
    if not labels:
        return "The data's source is not recorded (no `labels_report.json` in the store: labels from an older version)."
    src = labels["source"]
    if src["kind"] == "synthetic demo corpus":
        return (f"**The data is synthetic**: the demo corpus `{src['path']}` ({src['date']}), "
                "numpy-synthesised tracks with a hidden quality and a Discogs-like table generated from it; "
                "nothing here measures real music or real Discogs listings.")
    return f"The data is the Discogs table `{src['path']}` ({src['date']})."


def _shared_line(labels: dict[str, Any] | None) -> str:
    if not labels:
        return "The rule for videos linked from several releases is not recorded."
    b = labels["shared_balance"]
    rule = {"highest": "takes the highest of its releases' scores",
            "mean": "takes the mean of its releases' scores",
            "drop": "is ranked by the mean of its releases' scores, and dropped when they fall on both sides of "
                    "a cut-off"}[labels["shared_ids_rule"]]
    return (f"A video linked from several releases {rule} (`labels.shared_ids: {labels['shared_ids_rule']}`): of "
            f"{b['shared_ids']:,} such ids, {b['labelled']:,} are labelled, {b['good']:,} good and {b['not_good']:,} "
            "not-good.")


def _interval_rows(metrics: dict[str, Any]) -> str:
    from deepcurator.summary import fmt_interval

    boot = metrics.get("intervals") or {}
    if not boot.get("models"):
        return "No intervals: the test split holds one class only."
    sources = {"CNN": metrics["test"], "band-statistics baseline": metrics["baseline"]["test"],
               "strong baseline": metrics["strong_baseline"]["test"]}
    rows = ["| test tracks | ROC-AUC | 95 % interval | PR-AUC | 95 % interval |", "|---|---|---|---|---|"]
    for name, m in sources.items():
        iv = boot["models"][name]
        rows.append(f"| {name} | {_opt(m['track']['roc_auc'])} | {fmt_interval(iv['roc_auc'])} | "
                    f"{_opt(m['track']['pr_auc'])} | {fmt_interval(iv['pr_auc'])} |")
    for pair, d in boot["differences"].items():
        rows.append(f"| {pair} (paired) | {d['roc_auc']['estimate']:+.3f} | {fmt_interval(d['roc_auc']['interval'])} | "
                    f"{d['pr_auc']['estimate']:+.3f} | {fmt_interval(d['pr_auc']['interval'])} |")
    return ("\n".join(rows) + f"\n\nPercentile bootstrap over the {metrics['test']['track']['n']} test tracks, "
            f"{boot['used']} of {boot['resamples']} resamples (those with both classes); the three models are scored "
            "on the same resamples, so the differences are paired.")


def _architecture(head: str) -> str:
    if head == "global_max":
        return "three Conv–BatchNorm–ReLU–MaxPool blocks, the maximum of each channel over the slice"
    return "five Conv–BatchNorm–ReLU–MaxPool–Dropout blocks"


def model_card(metrics: dict[str, Any], train_config: dict[str, Any], state: dict[str, Any]) -> str:
    """``MODEL_CARD.md`` of a run: data and its source, labels, configuration, metrics with
    intervals, how often the test split was scored, intended use, caveats."""
    bal = metrics["data"]["class_balance"]
    slices = metrics["data"]["slices"]
    labels = metrics["data"].get("labels")
    agg = metrics["aggregation"]
    table = ["| model, level | n | accuracy | ROC-AUC | PR-AUC | Brier | ECE | confusion tn / fp / fn / tp |",
             "|---|---|---|---|---|---|---|---|"]
    for split in ("test", "val"):
        for level in ("track", "slice"):
            table.append(_row(f"CNN, {split} {level}s", metrics[split][level]))
            table.append(_row(f"band-statistics baseline, {split} {level}s", metrics["baseline"][split][level]))
            table.append(_row(f"strong baseline, {split} {level}s", metrics["strong_baseline"][split][level]))
    agg_rows = ["| aggregation | " + " | ".join(f"{m} ROC-AUC" for m in MODELS) + " |", "|---|---|---|---|"]
    for method, per in agg["test_tracks_by_aggregation"].items():
        mark = " (served)" if method == agg["method"] else ""
        agg_rows.append(f"| {method}{mark} | " + " | ".join(_opt(per[m]["roc_auc"]) for m in MODELS) + " |")
    times = metrics["test_scored"]["times"]
    config_lines = "\n".join(f"- `train.{k}`: {v}" for k, v in train_config.items() if k != "cache_dir")
    agg_word = {"mean": "mean", "median": "median", "topk": f"mean of the {agg['top_k']} highest"}[agg["method"]]
    return f"""# Model card: DeepCurator run `{metrics['run_id']}`

## What it is
A convolutional network (after Choi et al. 2016: {_architecture(metrics['model'].get('head', 'flatten'))}, Dense 50,
sigmoid; width ×{metrics['model']['width']}, {metrics['model']['params']:,} parameters)
that reads 30-s log-mel slices (128 mel bands × 1,291 frames, dB) and outputs the probability
that a track is in the "good" class. A track's score is the {agg_word} of its slices' scores × 100
(`serve.aggregation: {agg['method']}`, as the server computes it; the metrics below use it).

## Data and labels
Trained on {metrics['data'].get('trained_on', 'unknown')}.{_synthetic_note(metrics['data'].get('synthetic_demo'))}
{_source_line(labels)}

Labels come from Discogs statistics of the releases that link each YouTube video: the
want/have ratio, the Bayesian-weighted rating and the price, combined into one score; the
top N ids are "good" (1), the bottom N "not-good" (0). {_shared_line(labels)}
Splits are by track (no track has slices in two splits), by a keyed hash of the id (stable
when ids are added or dropped), stratified by label in expectation:

| split | tracks | good | not-good | slices |
|---|---|---|---|---|
""" + "\n".join(f"| {s} | {b['tracks']} | {b['good']} | {b['not_good']} | {slices[s]} |" for s, b in bal.items()) + f"""

## Training and what the validation split chose
Best epoch {state.get('best_epoch')} of {state.get('epoch')} by validation slice ROC-AUC
({_opt(state.get('best_val_roc_auc'))}). {_calibration_line(state.get('calibration'))}
The validation split chose the epoch, the calibration and both baselines' settings, so its
rows below are optimistic. {_settings_line(metrics['data'].get('synthetic_demo'))}
**The test split of this run has been scored {times} time{'s' if times != 1 else ''}** (this evaluation
included; `deepcurator evaluate` counts every scoring in `test_scored.json`): a number read
after several scorings, or after settings were changed in view of it, is no longer a clean
held-out estimate.

{config_lines}

## Metrics
Accuracy at a 0.5 threshold; PR-AUC is average precision; ECE is the expected calibration
error over 10 score bins (see `reliability.png`). Two baselines are trained and scored on the
same splits: the band-statistics baseline, a standardised logistic regression on the per-band
mean and standard deviation of each slice's log-mel (C = {metrics['baseline']['C']}, chosen on
validation), and the strong baseline, {metrics['strong_baseline']['model']}
(setting {metrics['strong_baseline']['setting']}, chosen on validation).

{_interval_rows(metrics)}

{chr(10).join(table)}

Test tracks under each aggregation of slice scores:

{chr(10).join(agg_rows)}

Plots: `training_curves.png`, `roc.png` (with both baselines' curves), `score_histograms.png`,
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
- Audio comes from YouTube uploads (varying quality, edits, possibly the wrong track).
- Scores are not calibrated probabilities of anything outside this label definition; check
  `reliability.png` before reading them as such.
"""


def _opt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
