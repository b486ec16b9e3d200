"""K training seeds × K splits on a store's labelled features: mean ± sd of the test-track
ROC-AUC of the CNN and both baselines (README, "Training and evaluation").

One number from one split and one seed says little on ~30 test tracks; this runs the
training K × K times on the labels and features already in a store (after `deepcurator
process`, e.g. the demo's `demo/store`): each split seed draws the keyed-hash splits of
:mod:`deepcurator.training.splits`, each training seed a fresh model (Keras fit on the fixed
slices, Adam, the epoch kept by validation slice ROC-AUC), tracks aggregated by the mean.
Both baselines are fitted per split (they have no training seed to vary).

    python bench/bench_seeds_splits.py --store demo/store --k 3 --epochs 12 --width 0.25
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path("demo/store"))
    ap.add_argument("--k", type=int, default=3, help="split seeds and training seeds, each (K x K runs)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    args = ap.parse_args()

    import keras
    from sklearn.metrics import roc_auc_score

    from deepcurator import runs
    from deepcurator.store import LocalStore
    from deepcurator.training import baseline, mir_baseline
    from deepcurator.training.data import build_index, fixed_slices, read_window
    from deepcurator.training.evaluation import track_scores
    from deepcurator.training.model import build_model
    from deepcurator.training.splits import make_splits

    store = LocalStore(args.store)
    index = build_index(store, runs.read_labels(store), None)
    items = fixed_slices(index)
    X = np.stack([read_window(*w) for w in items.windows()])
    band = baseline.slice_features(items)
    mir = mir_baseline.slice_features(items)
    print(f"{len(index)} tracks, {len(items)} slices; K = {args.k}: {args.k ** 2} trainings", flush=True)
    results: dict[str, list[float]] = {"CNN": [], "band-statistics baseline": [], "strong baseline": []}
    for split_seed in range(args.k):
        splits = make_splits(index[["youtube_id", "label"]], args.val_fraction, args.test_fraction, split_seed)
        where = index["youtube_id"].map(splits.set_index("youtube_id")["split"]).to_numpy()[items.track]
        tr, va, te = (where == s for s in ("train", "val", "test"))
        y = items.label
        test_tracks = np.unique(items.track[te])

        def track_auc(p: np.ndarray, rows: np.ndarray = te, tracks: np.ndarray = test_tracks) -> float:
            t = track_scores(p, items.track[rows], len(index))[tracks]
            return float(roc_auc_score(index["label"].to_numpy()[tracks], t))

        lr, _ = baseline.fit(band[tr], y[tr], band[va], y[va], split_seed)
        results["band-statistics baseline"].append(track_auc(lr.predict_proba(band[te])[:, 1]))
        gbt, _ = mir_baseline.fit(mir[tr], y[tr], mir[va], y[va], split_seed)
        results["strong baseline"].append(track_auc(gbt.predict_proba(mir[te])[:, 1]))
        for train_seed in range(args.k):
            t0 = time.monotonic()
            keras.utils.set_random_seed(1000 + train_seed)
            model = build_model(args.width)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
            best, best_test = -1.0, float("nan")
            for _ in range(args.epochs):
                model.fit(X[tr], y[tr], batch_size=16, epochs=1, shuffle=True, verbose=0)
                val = float(roc_auc_score(y[va], model.predict(X[va], batch_size=64, verbose=0)[:, 0]))
                if val > best:  # the epoch kept by validation, as the trainer does
                    best, best_test = val, track_auc(model.predict(X[te], batch_size=64, verbose=0)[:, 0])
            results["CNN"].append(best_test)
            print(f"split {split_seed} seed {train_seed}: CNN {best_test:.3f} (best val slice {best:.3f}), band "
                  f"{results['band-statistics baseline'][-1]:.3f}, strong {results['strong baseline'][-1]:.3f}, "
                  f"{len(test_tracks)} test tracks, {time.monotonic() - t0:.0f} s", flush=True)
    for name, values in results.items():
        v = np.array(values)
        print(f"{name}: test track ROC-AUC {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f} (n = {len(v)})")


if __name__ == "__main__":
    main()
