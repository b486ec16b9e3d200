"""Splits by track and by artist or label (no group in two splits), stable under added and dropped ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepcurator.errors import InputError
from deepcurator.training.splits import make_splits, track_groups


def test_adding_or_dropping_ids_moves_no_other_track() -> None:
    rng = np.random.default_rng(0)
    ids = [f"id{i:05d}x" for i in range(600)]
    labels = pd.DataFrame({"youtube_id": ids, "label": rng.integers(0, 2, 600)})
    base = make_splits(labels.iloc[:500], 0.15, 0.15, seed=1234).set_index("youtube_id")["split"]
    grown = make_splits(labels, 0.15, 0.15, seed=1234).set_index("youtube_id")["split"]  # 100 ids added
    shrunk = make_splits(labels.iloc[50:450], 0.15, 0.15, seed=1234).set_index("youtube_id")["split"]  # 100 dropped
    assert grown[base.index].equals(base)
    assert shrunk.equals(base[shrunk.index])
    assert not base.equals(make_splits(labels.iloc[:500], 0.15, 0.15, seed=1).set_index("youtube_id")["split"])
    # stratified: each class near its share in each held-out split (in expectation: 75 ± 8 of ~250)
    for c in (0, 1):
        part = labels.iloc[:500][labels.iloc[:500]["label"] == c]
        held = base[part["youtube_id"]]
        for split in ("val", "test"):
            assert abs((held == split).mean() - 0.15) < 0.06, (c, split)


def table(n_releases: int = 600, seed: int = 3) -> pd.DataFrame:
    """Rows like dataset.csv's: releases of ~80 artists, 1-3 videos each, some videos on two
    releases (of different artists), compilations credited to Various (194)."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_releases):
        artist = 194 if r % 25 == 0 else int(rng.integers(1000, 1080))
        for k in range(int(rng.integers(1, 4))):
            rows.append({"discogs_id": r, "youtube_id": f"yt{r:05d}_{k:03d}", "artist_id": artist,
                         "label_id": int(rng.integers(1, 40))})
        if r % 10 == 5:  # this release also links a video of an earlier release
            rows.append({"discogs_id": r, "youtube_id": f"yt{r - 5:05d}_000", "artist_id": artist, "label_id": 1818})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("key", ["artist", "label"])
def test_no_artist_or_label_spans_two_splits(key: str) -> None:
    rows = table()
    tracks = sorted(rows["youtube_id"].unique())
    rng = np.random.default_rng(1)
    labels = pd.DataFrame({"youtube_id": tracks, "label": rng.integers(0, 2, len(tracks))})
    groups = track_groups(rows, key)
    a = make_splits(labels, 0.15, 0.15, seed=7, groups=groups)
    b = make_splits(labels.sample(frac=1, random_state=2), 0.15, 0.15, seed=7, groups=groups)
    assert a.equals(b)  # deterministic, input order does not matter
    assert sorted(a["youtube_id"]) == tracks and a["youtube_id"].is_unique
    split_of = a.set_index("youtube_id")["split"]
    joined = rows.assign(split=rows["youtube_id"].map(split_of))
    real = joined[~joined[f"{key}_id"].isin([194, 355, 1818])]
    spans = real.groupby(f"{key}_id")["split"].nunique()
    assert (spans == 1).all(), spans[spans > 1]
    # held-out splits get near, never over, their share of each class
    for split, frac in (("test", 0.15), ("val", 0.15)):
        for c in (0, 1):
            n = int((labels["label"] == c).sum())
            got = int(((a["split"] == split) & (a["label"] == c)).sum())
            assert 0.5 * frac * n <= got <= round(frac * n), (split, c, got)


def test_groups_are_connected_through_shared_videos_not_through_various() -> None:
    rows = pd.DataFrame({
        "youtube_id": ["a", "b", "b", "c", "d", "e", "f"],
        "artist_id": [1, 1, 2, 2, 194, 194, None],
    })
    g = track_groups(rows, "artist")
    assert g["a"] == g["b"] == g["c"] == "a"  # artist 1 and 2 share video b
    assert g["d"] == "d" and g["e"] == "e" and g["f"] == "f"  # Various and missing ids link nothing
    with pytest.raises(InputError, match="needs the column label_id"):
        track_groups(rows, "label")


def test_training_reads_the_groups_from_the_stored_scores(tmp_path: Path) -> None:
    from deepcurator.store import LocalStore
    from deepcurator.training.loop import split_groups

    store = LocalStore(tmp_path)
    assert split_groups(store, "track") is None
    with pytest.raises(InputError, match=r"needs scores\.csv"):
        split_groups(store, "artist")
    rows = table(60)
    store.put_bytes("scores.csv", rows.to_csv(index=False).encode())
    assert split_groups(store, "artist").equals(track_groups(rows, "artist"))
    store.put_bytes("scores.csv", rows.drop(columns="artist_id").to_csv(index=False).encode())
    with pytest.raises(InputError, match="needs the column artist_id"):
        split_groups(store, "artist")
