"""Score the Discogs items of a dataset.csv and write labels.csv, scores.csv and
labels_scores.png to the store (top N ids good = 1, bottom N not-good = 0)."""

from __future__ import annotations

import argparse

from deepcurator.commands import int_in
from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="the Discogs table (default: config labels.dataset)")
    parser.add_argument("-n", type=int_in(1), help="ids per class, at least 1 (default: config labels.n)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    import dataclasses

    from deepcurator.stages import labels
    from deepcurator.store import open_store

    params = cfg.labels
    if args.dataset is not None:
        params = dataclasses.replace(params, dataset=args.dataset)
    if args.n is not None:
        params = dataclasses.replace(params, n=args.n)
    print(labels.run(params, open_store(cfg)).line())
    return 0
