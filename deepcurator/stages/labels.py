"""The labels stage: Discogs statistics become one score per item, and the top and bottom N
YouTube ids become "good" (1) and "not-good" (0). The scoring parameters are the ``labels:``
config section itself (:class:`~deepcurator.config.LabelsConfig`).

Each item gets three components, each min-max normalised to 0..1:

- ``ratio``: want / have; items above the ``outlier_quantile`` (0.99) are dropped;
- ``rating``: the Bayesian-weighted rating
  ``(n · r + m · C) / (n + m)``, with ``n`` the item's vote count, ``r`` its average,
  ``m`` the prior weight (30 votes) and ``C`` the mean of all votes of the kept items;
- ``price``: items with a zero price, and those above the quantile, are dropped.

Rows without a ``youtube_id``, or whose id is not a YouTube video id (exactly 11 characters
of ``A-Z a-z 0-9 _ -``), are dropped too, each reason counted.

The score is the weighted mean of the components, min-max normalised again. A YouTube id
linked from several releases gets one score by the rule ``labels.shared_ids``:

- ``highest``: the highest score among its releases (a video counts as sought-after when
  any release that carries it is);
- ``mean``: the mean of its releases' scores;
- ``drop``: ranked by the mean, but an id whose releases fall on both sides of a cut-off
  (one release's score at or above the good cut-off and another's below it, or one at or
  below the not-good cut-off and another above it) is dropped, and the rest ranked again
  (one pass: the cut-offs of the second ranking are not checked again).

:func:`shared_balance` measures what a rule does to the class balance of the shared ids
(docs/REFERENCE.md, "Labels": on the real table ``highest`` sends 4 in 5 of them to good).
Ids are ranked by score (ties broken by id, so the input's row order does not matter);
the top ``n`` are good (1), the bottom ``n`` not-good (0).

A relative ``labels.dataset`` is read from the working directory, else from the project's
folder, where the repository ships the original's table (:mod:`deepcurator.shipped`): so
``python create_labels.py`` with no arguments labels the shipped ``dataset.csv``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepcurator import layout, plots, shipped
from deepcurator.config import SHARED_ID_RULES, LabelsConfig
from deepcurator.errors import InputError
from deepcurator.store import Store
from deepcurator.youtube import VIDEO_ID

COLUMNS = ("discogs_id", "have", "want", "rating_average", "rating_count", "price", "youtube_id")
NUMERIC = ("have", "want", "rating_average", "rating_count", "price")

logger = logging.getLogger(__name__)


def check(params: LabelsConfig) -> None:
    """Raise :class:`InputError` naming the first scoring parameter out of range: ``n`` below
    1, a negative prior weight or component weight, all weights 0, or the quantile outside (0.5, 1]."""
    weights = {"weight_ratio": params.weight_ratio, "weight_rating": params.weight_rating,
               "weight_price": params.weight_price}
    if params.n < 1:
        raise InputError(f"n must be at least 1, got {params.n}")
    if not params.prior_weight >= 0:
        raise InputError(f"prior_weight must be 0 or more, got {params.prior_weight}")
    if not 0.5 < params.outlier_quantile <= 1.0:
        raise InputError(f"outlier_quantile must be in (0.5, 1], got {params.outlier_quantile}")
    for name, value in weights.items():
        if not value >= 0:
            raise InputError(f"{name} must be 0 or more, got {value}")
    if not sum(weights.values()) > 0:
        raise InputError("the component weights must add up to more than 0")
    if params.shared_ids not in SHARED_ID_RULES:
        raise InputError(f"shared_ids must be one of {', '.join(SHARED_ID_RULES)}, got {params.shared_ids!r}")


@dataclass
class LabelResult:
    """``labels``: youtube_id, label; ``scores``: every input row with components, score,
    status (``kept`` or the reason it was dropped) and label; ``dropped``: counts by reason."""

    labels: pd.DataFrame
    scores: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    thresholds: tuple[float, float] = (0.0, 0.0)


def minmax(values: pd.Series) -> pd.Series:
    """Scale to 0..1 (a constant series maps to 0)."""
    lo, hi = values.min(), values.max()
    if hi <= lo:
        return pd.Series(0.0, index=values.index)
    return (values - lo) / (hi - lo)


def bayesian_rating(average: pd.Series, count: pd.Series, prior_weight: float) -> pd.Series:
    """Ratings pulled toward the mean vote ``C`` by ``prior_weight`` phantom votes."""
    total = count.sum()
    mean_vote = (average * count).sum() / total if total > 0 else average.mean()
    return (count * average + prior_weight * mean_vote) / (count + prior_weight)


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check columns and types; return a copy with numeric columns as floats.

    Raises :class:`InputError` naming the missing columns or the first non-numeric or
    negative value (column and row number, 1-based after the header).
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"dataset is missing column(s): {', '.join(missing)}")
    out = df.copy()
    for col in NUMERIC:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna() & out[col].notna() | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"dataset column '{col}' has a non-numeric or negative value {out[col].iloc[row]!r} "
                             f"at row {row + 1}")
        out[col] = values.astype(float)
    out["youtube_id"] = out["youtube_id"].astype("string").str.strip()
    return out


def score_items(df: pd.DataFrame, params: LabelsConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """Score every usable row. Returns all rows with ``ratio``, ``rating``, ``price_norm``,
    ``score`` (NaN for dropped rows) and ``status``, and the drop counts by reason."""
    check(params)
    df = validate(df)
    status = pd.Series("kept", index=df.index, dtype="object")

    def drop(mask: pd.Series, reason: str) -> None:
        status[mask & (status == "kept")] = reason

    missing = df["youtube_id"].isna() | (df["youtube_id"] == "")
    drop(missing, "no youtube_id")
    drop(~df["youtube_id"].str.fullmatch(VIDEO_ID).fillna(False).astype(bool), "invalid youtube_id")
    drop(df[list(NUMERIC)].isna().any(axis=1), "missing value")
    drop(df["have"] == 0, "have == 0")
    drop(df["price"] == 0, "price == 0")
    usable = status == "kept"
    ratio = df["want"] / df["have"].where(df["have"] > 0)
    q = params.outlier_quantile
    if q < 1.0:
        drop(ratio > ratio[usable].quantile(q), "want/have outlier")
        drop(df["price"] > df["price"][usable].quantile(q), "price outlier")
    kept = status == "kept"
    k = df[kept]
    rating = bayesian_rating(k["rating_average"], k["rating_count"], params.prior_weight)
    comps = pd.DataFrame({"ratio": minmax(ratio[kept]), "rating": minmax(rating), "price_norm": minmax(k["price"])})
    weights = np.array([params.weight_ratio, params.weight_rating, params.weight_price], dtype=float)
    raw = comps.to_numpy() @ weights / weights.sum()
    comps["score"] = minmax(pd.Series(raw, index=comps.index))
    out = df.join(comps)
    out["status"] = status
    dropped = status[status != "kept"].value_counts().to_dict()
    return out, {str(k): int(v) for k, v in dropped.items()}


def _rank(per_id: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The top ``n`` and bottom ``n`` ids by score (ties broken by id)."""
    if len(per_id) < 2 * n:
        raise InputError(f"only {len(per_id)} usable distinct YouTube ids; labelling N={n} per class needs {2 * n}")
    ranked = per_id.sort_values(["score", "youtube_id"], ascending=[False, True],
                                kind="mergesort").reset_index(drop=True)
    return ranked.head(n), ranked.tail(n)


def id_scores(kept: pd.DataFrame, n: int, rule: str) -> pd.DataFrame:
    """One score per YouTube id (columns ``youtube_id``, ``score``, sorted by id) from the
    kept rows' scores, by the shared-id ``rule`` (module docstring)."""
    grouped = kept.groupby("youtube_id", sort=True)["score"]
    if rule == "highest":
        return grouped.max().reset_index()
    per_id = grouped.mean().reset_index()
    if rule == "mean":
        return per_id
    good, bad = _rank(per_id, n)
    hi_cut, lo_cut = float(good["score"].min()), float(bad["score"].max())
    lo, hi = grouped.min(), grouped.max()
    straddles = ((hi >= hi_cut) & (lo < hi_cut)) | ((lo <= lo_cut) & (hi > lo_cut))
    return per_id[~per_id["youtube_id"].isin(straddles[straddles].index)].reset_index(drop=True)


def make_labels(df: pd.DataFrame, params: LabelsConfig) -> LabelResult:
    """Score, take one score per YouTube id (``params.shared_ids``), rank, and label top/bottom ``n``.

    Raises :class:`InputError` when fewer than ``2 n`` distinct ids are usable.
    """
    scored, dropped = score_items(df, params)
    kept = scored[scored["status"] == "kept"]
    n = params.n
    per_id = id_scores(kept, n, params.shared_ids)
    good, bad = _rank(per_id, n)
    good, bad = good.assign(label=1), bad.assign(label=0)
    labels = pd.concat([good, bad], ignore_index=True)[["youtube_id", "label", "score"]]
    id_label = labels.set_index("youtube_id")["label"]
    scored["label"] = scored["youtube_id"].map(id_label).astype("Int64")
    scored = scored.sort_values(["discogs_id", "youtube_id", *NUMERIC], kind="mergesort").reset_index(drop=True)
    thresholds = (float(good["score"].min()), float(bad["score"].max()))
    return LabelResult(labels=labels, scores=scored, dropped=dropped, thresholds=thresholds)


def shared_balance(result: LabelResult) -> dict[str, int]:
    """Class balance of the labelled ids linked from more than one kept release:
    ``{"shared_ids": s, "labelled": l, "good": g, "not_good": b}`` (``s`` counts every shared
    kept id, labelled or not)."""
    kept = result.scores[result.scores["status"] == "kept"]
    counts = kept["youtube_id"].value_counts()
    shared = set(counts[counts > 1].index)
    lab = result.labels[result.labels["youtube_id"].isin(shared)]
    good = int((lab["label"] == 1).sum())
    return {"shared_ids": len(shared), "labelled": len(lab), "good": good, "not_good": len(lab) - good}


@dataclass
class LabelsRun:
    """What :func:`run` did: rows read, ids scored and labelled, drops by reason, the time."""

    rows: int
    repeated: int
    scored_ids: int
    n: int
    dropped: dict[str, int]
    destination: str
    elapsed_s: float

    def line(self) -> str:
        """The command's summary line."""
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items())) or "none"
        return (f"labels: read {self.rows} items, dropped {sum(self.dropped.values())} ({dropped}), "
                f"{self.repeated} rows repeat an id, {self.scored_ids} distinct ids scored, labelled {self.n} good + "
                f"{self.n} not-good -> {self.destination} ({self.elapsed_s:.1f} s)")


def locate_dataset(name: str) -> Path:
    """The table ``labels.dataset`` names: the path itself when it exists or is absolute, else
    the same relative path in the project's folder (the shipped ``dataset.csv``), said in a log
    line; else the path as given (and :func:`read_dataset` says it is not found)."""
    path = Path(name).expanduser()
    if path.exists() or path.is_absolute():
        return path
    found = shipped.find(path)
    if found is not None and found.is_file():
        logger.info("labels: no %s in the working directory; reading the project's %s", path, found)
        return found
    return path


def read_dataset(path: Path) -> pd.DataFrame:
    """The Discogs table at ``path``; :class:`InputError` when it is missing or not a CSV."""
    if not path.is_file():
        raise InputError(f"dataset {path} not found (set labels.dataset or pass --dataset)")
    try:
        return pd.read_csv(path, dtype={"youtube_id": "string"})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"dataset {path} is not a readable CSV: {exc}") from None


def source_of(path: Path, data_source: str) -> dict[str, str]:
    """What the table is (``labels.data_source``: the synthetic demo corpus or a Discogs
    table), where it was read, and its date: the shipped table's compilation year, else the
    file's modification date (UTC)."""
    import datetime as dt

    if shipped.is_shipped_dataset(path):
        date = shipped.SHIPPED_DATASET_DATE
    else:
        date = "file dated " + dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC).strftime("%Y-%m-%d")
    kind = "synthetic demo corpus" if data_source == shipped.DEMO_SOURCE else "Discogs table"
    return {"kind": kind, "path": str(path), "date": date}


def run(params: LabelsConfig, store: Store) -> LabelsRun:
    """Score ``params.dataset`` and write ``labels.csv``, ``scores.csv``,
    ``labels_scores.png`` and ``labels_report.json`` (the rule, its class balance, the
    source) to ``store`` (atomically, each)."""
    import json

    started = time.monotonic()
    path = locate_dataset(params.dataset)
    df = read_dataset(path)
    result = make_labels(df, params)
    store.put_bytes(layout.LABELS, result.labels[["youtube_id", "label"]].to_csv(index=False).encode())
    store.put_bytes(layout.SCORES, result.scores.to_csv(index=False, float_format="%.6f").encode())
    kept = result.scores[result.scores["status"] == "kept"]
    per_id = kept.groupby("youtube_id")["score"].max()
    store.put_bytes(layout.SCORES_PLOT, plots.score_histogram(per_id.to_numpy(), *result.thresholds, params.n))
    report = {"source": source_of(path, params.data_source), "n": params.n, "shared_ids_rule": params.shared_ids,
              "shared_balance": shared_balance(result), "thresholds": list(result.thresholds)}
    store.put_bytes(layout.LABELS_REPORT, (json.dumps(report, indent=2) + "\n").encode())
    return LabelsRun(rows=len(df), repeated=len(df) - int(df["youtube_id"].nunique()), scored_ids=len(per_id),
                     n=params.n, dropped=result.dropped, destination=f"{store.describe()}/{layout.LABELS}",
                     elapsed_s=time.monotonic() - started)
