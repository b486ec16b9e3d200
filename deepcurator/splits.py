"""Deterministic train/validation/test splits by track (youtube_id), stratified by label.

A track's slices all land in one split, so no split ever sees a track another one holds.
The assignment depends only on the set of (id, label) pairs, the fractions and the seed:
ids are sorted, then shuffled per class by a seeded generator.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepcurator.errors import InputError

SPLITS = ("train", "val", "test")


def make_splits(labels: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.DataFrame:
    """Assign each track to train, val or test.

    ``labels``: columns ``youtube_id``, ``label`` (0/1), one row per track. Per class,
    ``round(n · test_fraction)`` ids go to test and ``round(n · val_fraction)`` to val (at
    least one each when the class has three or more ids), the rest to train. Returns a frame
    ``youtube_id, split, label`` sorted by split then id.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError("train.val_fraction and train.test_fraction must be in (0, 1) and sum to under 1")
    if labels["youtube_id"].duplicated().any():
        raise InputError("labels name a youtube_id twice; each track needs exactly one label")
    rng = np.random.default_rng(seed)
    parts = []
    for label in sorted(labels["label"].unique()):
        ids = np.sort(labels.loc[labels["label"] == label, "youtube_id"].to_numpy(dtype=str))
        ids = ids[rng.permutation(len(ids))]
        n_test, n_val = _count(len(ids), test_fraction), _count(len(ids), val_fraction)
        split = np.array(["test"] * n_test + ["val"] * n_val + ["train"] * (len(ids) - n_test - n_val))
        parts.append(pd.DataFrame({"youtube_id": ids, "split": split, "label": int(label)}))
    out = pd.concat(parts, ignore_index=True)
    order = out["split"].map({s: i for i, s in enumerate(SPLITS)})
    return out.assign(_o=order).sort_values(["_o", "youtube_id"]).drop(columns="_o").reset_index(drop=True)


def _count(n: int, fraction: float) -> int:
    """Ids of one class going to a held-out split: a rounded share, at least one when n >= 3."""
    return max(1 if n >= 3 else 0, int(round(n * fraction)))


def class_balance(splits: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Tracks per split and class: ``{"train": {"tracks": n, "good": g, "not_good": b}, ...}``."""
    out = {}
    for name in SPLITS:
        part = splits[splits["split"] == name]
        good = int((part["label"] == 1).sum())
        out[name] = {"tracks": int(len(part)), "good": good, "not_good": int(len(part)) - good}
    return out
