"""Deterministic train/validation/test splits by track (youtube_id), stratified by label.

A track's slices all land in one split, so no split ever sees a track another one holds.
The assignment depends only on the set of (id, label) pairs, the fractions and the seed:
ids are sorted, then shuffled per class by a seeded generator.

Grouped splits (``train.split_by: artist`` or ``label``): tracks that share an artist (or
label) form one group, and a group never spans two splits, so the test split measures how
the model does on artists it has never heard rather than on other tracks of familiar ones.
Groups are the connected components of tracks linked through the key (a video linked from
releases of two artists joins both), built by :func:`track_groups`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from deepcurator.errors import InputError

SPLITS = ("train", "val", "test")


# Discogs ids that stand for no one: "Various" (194) and "Unknown Artist" (355) credit
# compilations and anonymous records, "Not On Label" (1818) self-releases. Linking through
# them would merge unrelated tracks into one giant group, so they link nothing.
NO_GROUP: dict[str, frozenset[int]] = {"artist": frozenset({194, 355}), "label": frozenset({1818})}


def track_groups(rows: pd.DataFrame, key: str) -> pd.Series:
    """Group of every track: ``youtube_id`` -> the smallest youtube_id of its group.

    ``rows``: one row per (release, video) with ``youtube_id`` and ``<key>_id`` (``key`` is
    ``artist`` or ``label``). Tracks are joined when a row links them to the same id; ids in
    :data:`NO_GROUP` and missing ids join nothing.
    """
    column = f"{key}_id"
    if column not in rows.columns:
        raise InputError(f"train.split_by={key} needs the column {column} in the dataset "
                         "(the original table has none; rebuild it with `deepcurator dataset`)")
    ids = rows["youtube_id"].astype(str)
    keys = pd.to_numeric(rows[column], errors="coerce")
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for track, k in zip(ids, keys, strict=True):
        find(track)
        if pd.notna(k) and int(k) not in NO_GROUP.get(key, frozenset()):
            a, b = find(track), find(f"{key}:{int(k)}")
            if a != b:
                parent[max(a, b)] = min(a, b)
    tracks = sorted(set(ids))
    members: dict[str, list[str]] = {}
    for t in tracks:
        members.setdefault(find(t), []).append(t)
    name = {root: min(ts) for root, ts in members.items()}
    return pd.Series({t: name[find(t)] for t in tracks}, name="group")


def make_splits(labels: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                groups: pd.Series | None = None) -> pd.DataFrame:
    """Assign each track to train, val or test.

    ``labels``: columns ``youtube_id``, ``label`` (0/1), one row per track. Per class,
    ``round(n · test_fraction)`` ids go to test and ``round(n · val_fraction)`` to val (at
    least one each when the class has three or more ids), the rest to train. Returns a frame
    ``youtube_id, split, label`` sorted by split then id.

    With ``groups`` (``youtube_id`` -> group, :func:`track_groups`; a track missing from it
    is its own group) whole groups are assigned instead (:func:`_grouped`): no group spans
    two splits, and the held-out splits get at most those counts per class.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError("train.val_fraction and train.test_fraction must be in (0, 1) and sum to under 1")
    if labels["youtube_id"].duplicated().any():
        raise InputError("labels name a youtube_id twice; each track needs exactly one label")
    if groups is not None:
        return _grouped(labels, val_fraction, test_fraction, seed, groups)
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


def _order(splits: pd.DataFrame) -> pd.DataFrame:
    order = splits["split"].map({s: i for i, s in enumerate(SPLITS)})
    return splits.assign(_o=order).sort_values(["_o", "youtube_id"]).drop(columns="_o").reset_index(drop=True)


def _grouped(labels: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
             groups: pd.Series) -> pd.DataFrame:
    """Whole groups to test and val, largest first (ties in seeded random order), each to
    the held-out split it fits best without passing its per-class target; the rest to train."""
    df = labels[["youtube_id", "label"]].copy()
    df["youtube_id"] = df["youtube_id"].astype(str)
    df["label"] = df["label"].astype(int)
    df["group"] = df["youtube_id"].map(groups).fillna(df["youtube_id"]).astype(str)
    classes = sorted(df["label"].unique())
    per_group = df.groupby(["group", "label"]).size().unstack(fill_value=0).reindex(columns=classes, fill_value=0)
    names = np.sort(per_group.index.to_numpy(dtype=str))
    names = names[np.random.default_rng(seed).permutation(len(names))]
    sizes = per_group.loc[names].sum(axis=1).to_numpy()
    names = names[np.argsort(-sizes, kind="stable")]
    totals = df["label"].value_counts()
    target = {"test": {c: _count(int(totals[c]), test_fraction) for c in classes},
              "val": {c: _count(int(totals[c]), val_fraction) for c in classes}}
    have = {s: dict.fromkeys(classes, 0) for s in target}
    where: dict[str, str] = {}
    for name in names:
        counts = per_group.loc[name]
        best, best_room = "train", 0
        for split in ("test", "val"):
            room = [target[split][c] - have[split][c] for c in classes]
            if all(counts[c] <= r for c, r in zip(classes, room, strict=True)):
                fill = sum(min(int(counts[c]), r) for c, r in zip(classes, room, strict=True))
                if fill > 0 and sum(room) > best_room:
                    best, best_room = split, sum(room)
        where[name] = best
        if best != "train":
            for c in classes:
                have[best][c] += int(counts[c])
    df["split"] = df["group"].map(where)
    return _order(df[["youtube_id", "split", "label"]])


def _count(n: int, fraction: float) -> int:
    """Ids of one class going to a held-out split: a rounded share, at least one when n >= 3."""
    return max(1 if n >= 3 else 0, round(n * fraction))


def class_balance(splits: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Tracks per split and class: ``{"train": {"tracks": n, "good": g, "not_good": b}, ...}``."""
    out = {}
    for name in SPLITS:
        part = splits[splits["split"] == name]
        good = int((part["label"] == 1).sum())
        out[name] = {"tracks": len(part), "good": good, "not_good": len(part) - good}
    return out
