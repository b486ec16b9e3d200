"""Stable train/validation/test splits by track (youtube_id), stratified by label.

A track's slices all land in one split, so no split ever sees a track another one holds.
A track's split is a function of its id and the seed alone: a keyed hash (BLAKE2b keyed by
the seed) maps the id to a number ``u`` in [0, 1); ``u < test_fraction`` is test,
``u < test_fraction + val_fraction`` is val, the rest train. Adding or dropping ids therefore
moves no other track, and a label set that grows keeps its old test tracks in test. Each
class is cut at the same thresholds, so the splits are stratified by label in expectation
(every class gets each fraction up to sampling noise: with 60 ids a class, 15 ± 3.4 test
ids at 0.25). One exception keeps tiny label sets usable: when a class of three or more ids
gets no id in a held-out split, its id whose ``u`` lies nearest that split's range is moved
there (this can only happen with a few ids a class).

Grouped splits (``train.split_by: artist`` or ``label``): tracks that share an artist (or
label) form one group, and a group never spans two splits, so the test split measures how
the model does on artists it has never heard rather than on other tracks of familiar ones.
Groups are the connected components of tracks linked through the key (a video linked from
releases of two artists joins both), built by :func:`track_groups`. Whole groups go to test
and val, largest first, until each reaches its per-class share (:func:`_grouped`): with a
few big groups a hash would leave the held-out splits far from their shares, so grouped
splits are seeded and deterministic but **not** stable under added ids.
"""

from __future__ import annotations

import hashlib

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


def hash_unit(key: str, seed: int) -> float:
    """A number in [0, 1) fixed by ``key`` and ``seed`` (BLAKE2b of the key, keyed by the seed)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _split_of(u: np.ndarray, val_fraction: float, test_fraction: float) -> np.ndarray:
    return np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train"))


def make_splits(labels: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int,
                groups: pd.Series | None = None) -> pd.DataFrame:
    """Assign each track to train, val or test by the keyed hash of its id (module docstring).

    ``labels``: columns ``youtube_id``, ``label`` (0/1), one row per track. Returns a frame
    ``youtube_id, split, label`` sorted by split then id. With ``groups`` (``youtube_id`` ->
    group, :func:`track_groups`; a track missing from it is its own group) whole groups are
    assigned instead (:func:`_grouped`): no group spans two splits.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError("train.val_fraction and train.test_fraction must be in (0, 1) and sum to under 1")
    if labels["youtube_id"].duplicated().any():
        raise InputError("labels name a youtube_id twice; each track needs exactly one label")
    if groups is not None:
        return _grouped(labels, val_fraction, test_fraction, seed, groups)
    df = labels[["youtube_id", "label"]].copy()
    df["youtube_id"] = df["youtube_id"].astype(str)
    df["label"] = df["label"].astype(int)
    u = np.array([hash_unit(k, seed) for k in df["youtube_id"]], dtype=np.float64)
    split = _split_of(u, val_fraction, test_fraction)
    ranges = {"test": (0.0, test_fraction), "val": (test_fraction, test_fraction + val_fraction)}
    for label in sorted(df["label"].unique()):
        rows = np.flatnonzero((df["label"] == label).to_numpy())
        for name, (lo, hi) in ranges.items():
            if len(rows) >= 3 and not (split[rows] == name).any():
                train_rows = rows[split[rows] == "train"]
                if len(train_rows):
                    dist = np.maximum(lo - u[train_rows], u[train_rows] - hi)
                    split[train_rows[np.argmin(dist)]] = name
    df["split"] = split
    return _order(df[["youtube_id", "split", "label"]])


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
