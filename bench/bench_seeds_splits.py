"""K split seeds (× S training seeds) on a store's labelled features: mean ± sd of the
test-track ROC-AUC of the CNN and both baselines, for each way of splitting
(docs/REFERENCE.md, "Training and evaluation").

One number from one split and one seed says little on ~30 test tracks; this runs the
training on the labels and features already in a store (after `deepcurator process`, e.g.
the demo's `demo/store`): each split seed draws the splits of
:mod:`deepcurator.training.splits` (by track: the keyed hash; by artist or label: whole
groups, from the store's scores.csv, as `train.split_by` does), each training seed a fresh
model (Keras fit on the fixed slices, Adam, the epoch kept by validation slice ROC-AUC),
tracks aggregated by the mean. Both baselines are fitted per split (they have no training
seed to vary). ``--train-seeds 0`` fits the baselines only.

    python bench/bench_seeds_splits.py --store demo/store --k 3 --train-seeds 3 --epochs 16 --width 0.5
    python bench/bench_seeds_splits.py --store STORE --split-by track artist --k 10 --train-seeds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MODELS = ("CNN", "band-statistics baseline", "strong baseline")


def seeds_by_splits(store_path: Path, split_by: list[str], k: int, train_seeds: int, epochs: int, width: float,
                    val_fraction: float = 0.2, test_fraction: float = 0.25,
                    head: str = "global_max") -> dict[str, dict[str, list[float]]]:
    """``{split_by: {model: [test track ROC-AUC of each run]}}`` (see the module docstring)."""
    import keras
    from sklearn.metrics import roc_auc_score

    from deepcurator import runs
    from deepcurator.store import LocalStore
    from deepcurator.training import baseline, mir_baseline
    from deepcurator.training.data import build_index, fixed_slices, read_window
    from deepcurator.training.evaluation import track_scores
    from deepcurator.training.loop import split_groups
    from deepcurator.training.model import build_model
    from deepcurator.training.splits import make_splits

    store = LocalStore(store_path)
    index = build_index(store, runs.read_labels(store), None)
    items = fixed_slices(index)
    X = np.stack([read_window(*w) for w in items.windows()]) if train_seeds else None
    band = baseline.slice_features(items)
    mir = mir_baseline.slice_features(items)
    print(f"{len(index)} tracks, {len(items)} slices; {k} split seeds x {train_seeds} training seeds, "
          f"split by {', '.join(split_by)}", flush=True)
    out: dict[str, dict[str, list[float]]] = {}
    for by in split_by:
        groups = split_groups(store, by)
        results: dict[str, list[float]] = {m: [] for m in MODELS}
        for split_seed in range(k):
            splits = make_splits(index[["youtube_id", "label"]], val_fraction, test_fraction, split_seed, groups=groups)
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
            line = (f"split by {by}, split {split_seed}: band {results['band-statistics baseline'][-1]:.3f}, "
                    f"strong {results['strong baseline'][-1]:.3f}, {len(test_tracks)} test tracks")
            for train_seed in range(train_seeds):
                assert X is not None
                t0 = time.monotonic()
                keras.utils.set_random_seed(1000 + train_seed)
                model = build_model(width, head=head)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
                best, best_test = -1.0, float("nan")
                for _ in range(epochs):
                    model.fit(X[tr], y[tr], batch_size=16, epochs=1, shuffle=True, verbose=0)
                    val = float(roc_auc_score(y[va], model.predict(X[va], batch_size=64, verbose=0)[:, 0]))
                    if val > best:  # the epoch kept by validation, as the trainer does
                        best, best_test = val, track_auc(model.predict(X[te], batch_size=64, verbose=0)[:, 0])
                results["CNN"].append(best_test)
                line += f"; CNN seed {train_seed} {best_test:.3f} (val slice {best:.3f}, {time.monotonic() - t0:.0f} s)"
            print(line, flush=True)
        out[by] = results
    return out


def summary_lines(results: dict[str, dict[str, list[float]]]) -> list[str]:
    """``split by X: model: mean ± sd (n runs)`` lines."""
    lines = []
    for by, per_model in results.items():
        for name, values in per_model.items():
            if values:
                v = np.array(values)
                sd = v.std(ddof=1) if len(v) > 1 else 0.0
                lines.append(f"split by {by}: {name}: test track ROC-AUC {v.mean():.3f} ± {sd:.3f} (n = {len(v)} runs)")
    return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=Path("demo/store"))
    ap.add_argument("--k", type=int, default=3, help="split seeds")
    ap.add_argument("--train-seeds", type=int, default=3, help="CNN training seeds per split (0: baselines only)")
    ap.add_argument("--split-by", nargs="+", default=["track"], choices=["track", "artist", "label"])
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--head", default="global_max", choices=["flatten", "global_max"])
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    args = ap.parse_args(argv)
    results = seeds_by_splits(args.store, args.split_by, args.k, args.train_seeds, args.epochs, args.width,
                              args.val_fraction, args.test_fraction, args.head)
    for line in summary_lines(results):
        print(line)
    return results


if __name__ == "__main__":
    main()
