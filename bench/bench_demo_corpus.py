"""Benchmark and learnability check of the demo corpus.

1. generate the corpus (`deepcurator demo-corpus`, timed, wall and CPU);
2. labels with deepcurator.stages.labels on its dataset.csv (top/bottom N = 0.3 x tracks) and how
   well they agree with the hidden q;
3. log-mel of every labelled track (audio.decode + features.logmel, as the process stage);
4. a logistic-regression baseline on per-band mean/std of each 30-s slice, 5-fold
   cross-validated by track, track AUC = mean of slice probabilities;
5. the narrow CNN (model.build_model(width)) trained on the fixed slices of a track-level
   split (55 % train, 45 % held out, about the demo's train vs val+test), batch 16,
   Adam 1e-3: held-out track-level ROC-AUC after each epoch and seconds per epoch.

    python bench/bench_demo_corpus.py --tracks 200 --epochs 12 --out /tmp/bench_corpus
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def track_logmel(path: str) -> np.ndarray:
    from deepcurator.audio import decode
    from deepcurator.features import logmel, quantize

    return quantize(logmel(decode(path)))


def track_auc(y_track: dict[str, int], slice_ids: np.ndarray, slice_p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ids = sorted(set(slice_ids.tolist()))
    score = [float(slice_p[slice_ids == i].mean()) for i in ids]
    return float(roc_auc_score([y_track[i] for i in ids], score))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tracks", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_corpus"))
    ap.add_argument("--label-fraction", type=float, default=0.3)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--head", default="flatten", help="model head: flatten or global_max (training/model.py)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    import pandas as pd
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from deepcurator.config import LabelsConfig
    from deepcurator.features import model_input
    from deepcurator.stages import labels

    # 1. generate
    env = dict(os.environ, PYTHONPATH=str(REPO))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "deepcurator", "demo-corpus", "--out", str(args.out),
                    "--tracks", str(args.tracks), "--seed", str(args.seed), "--workers", str(args.workers)],
                   env=env, check=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    size = sum(p.stat().st_size for p in (args.out / "tracks").iterdir())
    print(f"generate: {args.tracks} tracks in {wall:.1f} s wall, {cpu:.1f} s CPU ({args.workers} workers), "
          f"{size / 1e6:.0f} MB")

    # 2. labels
    truth = pd.read_csv(args.out / "truth.csv", dtype={"youtube_id": str})
    ds = pd.read_csv(args.out / "dataset.csv", dtype={"youtube_id": "string"})
    n = max(4, round(args.label_fraction * args.tracks))
    res = labels.make_labels(ds, LabelsConfig(n=n))
    lab = res.labels.merge(truth, on="youtube_id")
    per_id = res.scores[res.scores["status"] == "kept"].groupby("youtube_id")["score"].max()
    rho = spearmanr(per_id.to_numpy(), truth.set_index("youtube_id").loc[per_id.index, "q"].to_numpy())[0]
    agree = roc_auc_score(lab["label"], lab["q"])
    print(f"labels: n={n} per class; Spearman(score, q) = {rho:.3f}; ROC-AUC of q for the label = {agree:.3f}; "
          f"q of good: min {lab[lab.label == 1].q.min():.2f}, median {lab[lab.label == 1].q.median():.2f}; "
          f"q of not-good: max {lab[lab.label == 0].q.max():.2f}, median {lab[lab.label == 0].q.median():.2f}")

    # 3. features
    t0 = time.monotonic()
    paths = [str(args.out / f) for f in lab["file"]]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        mels = list(pool.map(track_logmel, paths, chunksize=4))
    print(f"features: {len(mels)} tracks in {time.monotonic() - t0:.1f} s")
    xs, ids = [], []
    for yid, S in zip(lab["youtube_id"], mels, strict=True):
        x = model_input(S)
        xs.append(x)
        ids += [yid] * len(x)
    X = np.concatenate(xs)
    ids_arr = np.array(ids)
    y_track = dict(zip(lab["youtube_id"], lab["label"].astype(int), strict=True))
    y = np.array([y_track[i] for i in ids], dtype=np.float32)
    print(f"slices: {len(X)} from {len(lab)} tracks")

    # 4. baseline
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from deepcurator.training.baseline import band_stats

    F = np.stack([band_stats(x) for x in X])  # the baseline's own features, per slice
    p = np.zeros(len(X))
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(F, y, ids_arr):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(F[tr], y[tr])
        p[te] = clf.predict_proba(F[te])[:, 1]
    print(f"baseline: logistic regression on per-band mean/std, 5-fold by track: "
          f"track ROC-AUC {track_auc(y_track, ids_arr, p):.3f}")
    from sklearn.ensemble import HistGradientBoostingClassifier

    from deepcurator.training.mir_baseline import slice_mir_features

    t0 = time.monotonic()
    M = np.stack([slice_mir_features(x) for x in X])
    p_mir = np.zeros(len(X))
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=0).split(M, y, ids_arr):
        gbt = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3, l2_regularization=1.0,
                                             min_samples_leaf=10, random_state=0).fit(M[tr], y[tr])
        p_mir[te] = gbt.predict_proba(M[te])[:, 1]
    print(f"strong baseline: gradient-boosted trees on MFCC/contrast/chroma/onset/tempo features "
          f"({time.monotonic() - t0:.0f} s), 5-fold by track: track ROC-AUC {track_auc(y_track, ids_arr, p_mir):.3f}")
    # which hidden factor each feature set follows: AUC of the truth's columns for the label
    for col in ("timing", "pitch", "hiss", "muddy", "clipping", "brightness", "level_db"):
        print(f"  truth column {col}: ROC-AUC for the label {roc_auc_score(lab['label'], -lab[col]):.3f}")
    if args.epochs == 0:
        return

    # 5. CNN
    import keras

    from deepcurator.training.model import build_model

    tracks_sorted = sorted(y_track)
    for train_seed in args.train_seeds:
        rng = np.random.default_rng(train_seed)
        good = [t for t in tracks_sorted if y_track[t] == 1]
        bad = [t for t in tracks_sorted if y_track[t] == 0]
        rng.shuffle(good)
        rng.shuffle(bad)
        train_ids = set(good[: round(0.55 * len(good))] + bad[: round(0.55 * len(bad))])
        is_train = np.array([i in train_ids for i in ids])
        keras.utils.set_random_seed(train_seed)
        model = build_model(width=args.width, head=args.head)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        aucs, secs = [], []
        for epoch in range(args.epochs):
            t0 = time.monotonic()
            model.fit(X[is_train], y[is_train], batch_size=16, epochs=1, shuffle=True, verbose=0)
            secs.append(time.monotonic() - t0)
            pv = model.predict(X[~is_train], batch_size=64, verbose=0)[:, 0]
            aucs.append(track_auc(y_track, ids_arr[~is_train], pv))
            print(f"cnn seed {train_seed} epoch {epoch + 1}: held-out track ROC-AUC {aucs[-1]:.3f} "
                  f"({secs[-1]:.1f} s)", flush=True)
        # the baselines fitted on the same training tracks, scored on the same held-out tracks as
        # the CNN's last epoch (not its best: the epoch count is fixed in advance), and the
        # paired bootstrap of the differences (training/intervals.py)
        from deepcurator.training.intervals import bootstrap

        held = sorted(set(ids_arr[~is_train].tolist()))
        band = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(F[is_train], y[is_train])
        gbt = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_depth=3, l2_regularization=1.0,
                                             min_samples_leaf=10, random_state=0).fit(M[is_train], y[is_train])
        slice_scores = {"cnn": pv, "band": band.predict_proba(F[~is_train])[:, 1],
                        "strong": gbt.predict_proba(M[~is_train])[:, 1]}
        held_ids = ids_arr[~is_train]
        track_scores = {k: np.array([v[held_ids == i].mean() for i in held]) for k, v in slice_scores.items()}
        yh = np.array([y_track[i] for i in held])
        boot = bootstrap(yh, track_scores, [("cnn", "strong"), ("cnn", "band")])
        for k, v in track_scores.items():
            print(f"held-out n={len(held)}: {k} track ROC-AUC {roc_auc_score(yh, v):.3f} "
                  f"[{boot['models'][k]['roc_auc'][0]:.3f}, {boot['models'][k]['roc_auc'][1]:.3f}]")
        for k, v in boot["differences"].items():
            print(f"held-out n={len(held)}: {k} ROC-AUC {v['roc_auc']['estimate']:+.3f} "
                  f"[{v['roc_auc']['interval'][0]:+.3f}, {v['roc_auc']['interval'][1]:+.3f}]")
        print(f"cnn seed {train_seed}: width {args.width}, {int(is_train.sum())} train slices "
              f"({len(train_ids)} tracks), {int((~is_train).sum())} held-out slices; best {max(aucs):.3f} at epoch "
              f"{int(np.argmax(aucs)) + 1}, last {aucs[-1]:.3f}; {np.median(secs):.1f} s/epoch")


if __name__ == "__main__":
    main()
