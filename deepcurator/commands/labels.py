"""Score the Discogs items of a dataset.csv and write labels.csv, scores.csv and
labels_scores.png to the store (top N ids good = 1, bottom N not-good = 0)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from deepcurator.cli import int_in
from deepcurator.config import Config
from deepcurator.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="the Discogs table (default: config labels.dataset)")
    parser.add_argument("-n", type=int_in(1), help="ids per class, at least 1 (default: config labels.n)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    import pandas as pd

    from deepcurator import plots

    from deepcurator.stages import labels
    from deepcurator.store import open_store

    started = time.monotonic()
    path = Path(args.dataset or cfg.labels.dataset)
    if not path.is_file():
        raise InputError(f"dataset {path} not found (set labels.dataset or pass --dataset)")
    try:
        df = pd.read_csv(path, dtype={"youtube_id": "string"})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"dataset {path} is not a readable CSV: {exc}") from None
    c = cfg.labels
    params = labels.ScoringParams(
        n=c.n if args.n is None else args.n, prior_weight=c.prior_weight, outlier_quantile=c.outlier_quantile,
        weight_ratio=c.weight_ratio, weight_rating=c.weight_rating, weight_price=c.weight_price,
    )
    result = labels.make_labels(df, params)
    store = open_store(cfg)
    store.put_bytes("labels.csv", result.labels[["youtube_id", "label"]].to_csv(index=False).encode())
    store.put_bytes("scores.csv", result.scores.to_csv(index=False, float_format="%.6f").encode())
    per_id = result.scores[result.scores["status"] == "kept"].groupby("youtube_id")["score"].max()
    store.put_bytes("labels_scores.png", plots.score_histogram(per_id.to_numpy(), *result.thresholds, params.n))
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(result.dropped.items())) or "none"
    repeated = len(df) - df["youtube_id"].nunique()
    print(
        f"labels: read {len(df)} items, dropped {sum(result.dropped.values())} ({dropped}), "
        f"{repeated} rows repeat an id, {len(per_id)} distinct ids scored, labelled {params.n} good + "
        f"{params.n} not-good -> {store.describe()}/labels.csv ({time.monotonic() - started:.1f} s)"
    )
    return 0
