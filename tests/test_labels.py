"""The labels stage: the scoring maths pinned on hand-computed tables, invariants held by
hypothesis, input validation, and the real Discogs table."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepcurator.config import LabelsConfig
from deepcurator.errors import InputError
from deepcurator.stages.labels import bayesian_rating, make_labels, minmax, score_items

from tests.helpers.cli import run_cli, write_config


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["discogs_id", "have", "want", "rating_average", "rating_count", "price",
                                       "youtube_id"])


# Four items worked by hand (prior weight 30, no outlier cut):
#   mean vote C = (4·10 + 3·30 + 5·0 + 2·20) / 60 = 2.8333
#   Bayesian ratings: A (40 + 85) / 40 = 3.125, B 175 / 60 = 2.9167, C 85 / 30 = 2.8333, D 125 / 50 = 2.5
#   normalised: ratio (2, 1, .5, 0) → (1, .5, .25, 0); rating → (1, .6667, .5333, 0); price (10..40) → (0, 1/3, 2/3, 1)
#   means (.6667, .5, .4833, .3333) → normalised again (1, .5, .45, 0)
HAND = table([
    (1, 10, 20, 4.0, 10, 10.0, "AAAAAAAAAAA"),
    (2, 10, 10, 3.0, 30, 20.0, "BBBBBBBBBBB"),
    (3, 20, 10, 5.0, 0, 30.0, "CCCCCCCCCCC"),
    (4, 10, 0, 2.0, 20, 40.0, "DDDDDDDDDDD"),
])


def test_bayesian_rating_by_hand() -> None:
    got = bayesian_rating(HAND["rating_average"], HAND["rating_count"], 30.0)
    np.testing.assert_allclose(got, [3.125, 175 / 60, 85 / 30, 2.5])


def test_scores_by_hand() -> None:
    scored, dropped = score_items(HAND, LabelsConfig(n=1, outlier_quantile=1.0))
    assert dropped == {}
    np.testing.assert_allclose(scored["ratio"], [1, 0.5, 0.25, 0])
    np.testing.assert_allclose(scored["rating"], [1, (2.9167 - 2.5) / 0.625, (2.8333 - 2.5) / 0.625, 0], atol=1e-4)
    np.testing.assert_allclose(scored["price_norm"], [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(scored["score"], [1, 0.5, 0.45, 0], atol=1e-9)


def test_weights_change_the_score() -> None:
    scored, _ = score_items(HAND, LabelsConfig(n=1, outlier_quantile=1.0, weight_price=0.0))
    np.testing.assert_allclose(scored["score"], [1, (0.5 + 2 / 3) / 2, (0.25 + 0.8 / 1.5) / 2, 0], atol=1e-9)


def test_top_and_bottom_n() -> None:
    result = make_labels(HAND, LabelsConfig(n=2, outlier_quantile=1.0))
    assert result.labels[["youtube_id", "label"]].values.tolist() == [
        ["AAAAAAAAAAA", 1], ["BBBBBBBBBBB", 1], ["CCCCCCCCCCC", 0], ["DDDDDDDDDDD", 0]]


def test_outliers_and_zero_prices_are_dropped() -> None:
    rows = [(i, 10, 10 + i, 3.0, 5, 10.0 + (i * 37) % 100, f"id{i:09d}") for i in range(100)]
    rows[5] = (5, 10, 15, 3.0, 5, 0.0, "id000000005")  # zero price
    result = score_items(table(rows), LabelsConfig(n=10, outlier_quantile=0.99))
    assert result[1] == {"price == 0": 1, "want/have outlier": 1, "price outlier": 1}
    assert result[0].loc[99, "status"] == "want/have outlier" and result[0].loc[27, "status"] == "price outlier"


def test_an_id_linked_from_several_releases_gets_one_label_by_the_shared_id_rule() -> None:
    dup = pd.concat([HAND, table([(5, 10, 20, 4.0, 10, 10.0, "DDDDDDDDDDD")])], ignore_index=True)
    result = make_labels(dup, LabelsConfig(n=2, outlier_quantile=1.0, shared_ids="highest"))
    assert result.labels["youtube_id"].is_unique
    assert result.labels.set_index("youtube_id").loc["DDDDDDDDDDD", "label"] == 1  # its best release
    scored, _ = score_items(dup, LabelsConfig(n=2, outlier_quantile=1.0))
    d = scored.loc[scored["youtube_id"] == "DDDDDDDDDDD", "score"]
    mean = make_labels(dup, LabelsConfig(n=2, outlier_quantile=1.0, shared_ids="mean"))
    assert mean.labels.set_index("youtube_id").loc["DDDDDDDDDDD", "score"] == pytest.approx(d.mean())
    # drop: its releases fall on both sides of a cut-off, so it is not labelled; N ids a class still are
    drop = make_labels(dup, LabelsConfig(n=1, outlier_quantile=1.0, shared_ids="drop"))
    assert d.max() > d.min() and "DDDDDDDDDDD" not in set(drop.labels["youtube_id"])
    assert (drop.labels["label"] == 1).sum() == (drop.labels["label"] == 0).sum() == 1
    with pytest.raises(InputError, match="shared_ids"):
        make_labels(dup, LabelsConfig(n=2, shared_ids="max"))


def test_minmax_of_constant_is_zero() -> None:
    assert minmax(pd.Series([3.0, 3.0])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.drop(columns=["price"]), "missing column(s): price"),
    (lambda d: d.assign(want=["1", "x", "3", "4"]), "column 'want' has a non-numeric or negative value 'x' at row 2"),
    (lambda d: d.assign(price=[1.0, -2.0, 3.0, 4.0]), "column 'price'"),
])
def test_bad_tables_are_clear_errors(change: Callable[[pd.DataFrame], pd.DataFrame], message: str) -> None:
    with pytest.raises(InputError) as err:
        make_labels(change(HAND), LabelsConfig(n=1, outlier_quantile=1.0))
    assert message in str(err.value)


def test_have_zero_is_dropped_and_too_few_items_says_how_many() -> None:
    bad = HAND.assign(have=[10, 0, 20, 10])
    _scored, dropped = score_items(bad, LabelsConfig(n=1, outlier_quantile=1.0))
    assert dropped == {"have == 0": 1}
    with pytest.raises(InputError, match="only 3 usable distinct YouTube ids; labelling N=2 per class needs 4"):
        make_labels(bad, LabelsConfig(n=2, outlier_quantile=1.0))


def test_ids_that_are_not_youtube_ids_are_dropped_with_a_reason() -> None:
    """A YouTube id is exactly 11 characters of A-Z a-z 0-9 _ -; anything else is dropped."""
    bad = ["AAAAAAAA AA", "AAAAAAAAAA!", "AAAAAAAAA\u00e9A", "AAAAAAAAAA", "AAAAAAAAAAAA", "AAAA/AAAAAA"]
    rows = [(10 + i, 10, 10, 3.0, 5, 10.0, yid) for i, yid in enumerate(bad)]
    rows += [(20, 10, 10, 3.0, 5, 10.0, None), (21, 10, 10, 3.0, 5, 10.0, "   ")]
    df = pd.concat([HAND, table(rows), table([(22, 10, 10, 3.0, 5, 10.0, "-_aZ09-_aZ0")])], ignore_index=True)
    scored, dropped = score_items(df, LabelsConfig(n=1, outlier_quantile=1.0))
    assert dropped == {"invalid youtube_id": len(bad), "no youtube_id": 2}
    assert set(scored.loc[scored["status"] == "kept", "youtube_id"]) == {*HAND["youtube_id"], "-_aZ09-_aZ0"}


def test_the_demo_corpus_ids_are_youtube_ids() -> None:
    from deepcurator.demo import corpus as demo_corpus
    from deepcurator.youtube import is_video_id

    corpus = demo_corpus.draw_corpus(7, 300)
    assert all(is_video_id(t.youtube_id) for t in corpus)
    _scored, dropped = score_items(pd.DataFrame(demo_corpus.dataset_rows(corpus, 7)), LabelsConfig(n=1))
    assert "invalid youtube_id" not in dropped and "no youtube_id" not in dropped


@pytest.mark.parametrize(("params", "message"), [
    (LabelsConfig(n=0), "n must be at least 1, got 0"),
    (LabelsConfig(n=-5), "n must be at least 1, got -5"),
    (LabelsConfig(n=1, prior_weight=-1.0), "prior_weight must be 0 or more, got -1.0"),
    (LabelsConfig(n=1, weight_rating=-1.0), "weight_rating must be 0 or more, got -1.0"),
    (LabelsConfig(n=1, weight_ratio=0.0, weight_rating=0.0, weight_price=0.0), "must add up to more than 0"),
    (LabelsConfig(n=1, weight_price=float("nan")), "weight_price must be 0 or more, got nan"),
    (LabelsConfig(n=1, outlier_quantile=0.2), "outlier_quantile must be in (0.5, 1]"),
])
def test_bad_scoring_parameters_are_clear_errors(params: LabelsConfig, message: str) -> None:
    with pytest.raises(InputError) as err:
        make_labels(HAND, params)
    assert message in str(err.value)


ids = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-", min_size=11, max_size=11)
row = st.tuples(
    st.integers(1, 10**6), st.integers(1, 500), st.integers(0, 500), st.floats(0, 5, allow_nan=False),
    st.integers(0, 200), st.floats(0.5, 300, allow_nan=False), ids,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=6, max_size=60), data=st.data())
def test_label_invariants(rows: list[tuple], data: st.DataObject) -> None:
    df = table(rows)
    usable = df["youtube_id"].nunique()
    n = data.draw(st.integers(1, max(1, usable // 2)))
    rule = data.draw(st.sampled_from(["highest", "mean", "drop"]))
    params = LabelsConfig(n=n, outlier_quantile=1.0, shared_ids=rule)
    if usable < 2 * n:
        with pytest.raises(InputError):
            make_labels(df, params)
        return
    try:
        result = make_labels(df, params)
    except InputError as exc:  # drop: ids on both sides of a cut-off may leave fewer than 2 n
        assert rule == "drop" and "usable distinct YouTube ids" in str(exc)
        return
    labels = result.labels
    good = set(labels.loc[labels["label"] == 1, "youtube_id"])
    bad = set(labels.loc[labels["label"] == 0, "youtube_id"])
    assert len(good) == n and len(bad) == n and not good & bad
    assert labels["youtube_id"].is_unique
    assert labels.loc[labels["label"] == 1, "score"].min() >= labels.loc[labels["label"] == 0, "score"].max()
    shuffled = df.sample(frac=1.0, random_state=data.draw(st.integers(0, 2**31))).reset_index(drop=True)
    again = make_labels(shuffled, params)
    pd.testing.assert_frame_equal(again.labels, labels)
    pd.testing.assert_frame_equal(again.scores, result.scores)


@pytest.mark.slow
def test_real_dataset(shared_dataset: Path, tmp_path: Path) -> None:
    """The stage on the real 90,370-item table: 15,000 + 15,000 distinct ids, in under 10 s,
    and a rerun writes byte-identical files."""
    from deepcurator import config

    cfg = config.from_dict({"store": {"path": str(tmp_path / "store")}, "labels": {"dataset": str(shared_dataset)}})
    write_config(cfg, tmp_path / "config.yml")
    started = time.monotonic()
    proc = run_cli("labels", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 10, f"labels took {elapsed:.1f} s"
    assert "read 90370 items" in proc.stdout
    store = tmp_path / "store"
    labels = pd.read_csv(store / "labels.csv")
    assert list(labels.columns) == ["youtube_id", "label"]
    assert labels["youtube_id"].is_unique and labels["youtube_id"].str.len().eq(11).all()
    assert (labels["label"] == 1).sum() == 15000 and (labels["label"] == 0).sum() == 15000
    scores = pd.read_csv(store / "scores.csv")
    assert len(scores) == 90370
    assert (store / "labels_scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = {p.name: p.read_bytes() for p in store.iterdir()}
    assert run_cli("labels", cwd=tmp_path).returncode == 0
    assert {p.name: p.read_bytes() for p in store.iterdir()} == first
