"""Generate the demo corpus: synthetic electronic-music tracks (wav/ogg/flac, stereo,
44.1 kHz, 45-120 s, 118-132 BPM) in a folder that plays the part of YouTube, a dataset.csv
in the real Discogs table's schema whose item scores rise with each track's hidden
production quality, and truth.csv with that hidden truth. Deterministic for a seed;
rerunning resumes (finished tracks are skipped)."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("corpus"), help="corpus folder (default: ./corpus)")
    parser.add_argument("--tracks", type=int, default=200, help="number of tracks (default: 200)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the usable cores)")
    parser.add_argument("--artists", type=int, default=0,
                        help="tracks by this many artists who share a sound and part of their quality, with "
                             "artist_id/artist_name in dataset.csv (for train.split_by: artist; default 0: none)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.demo import corpus
    from deepcurator.store import LocalStore

    summary = corpus.run(cfg, LocalStore(args.out), tracks=args.tracks, seed=args.seed, workers=args.workers,
                         artists=args.artists)
    print(summary.line())
    return 1 if summary.failed else 0
