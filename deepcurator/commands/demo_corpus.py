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


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.demo import corpus as dc
    from deepcurator.errors import InputError
    from deepcurator.parallel import Summary, default_workers, make_executor, run_items

    if args.tracks < 1:
        raise InputError(f"--tracks must be at least 1 (got {args.tracks})")
    out: Path = args.out
    (out / "tracks").mkdir(parents=True, exist_ok=True)
    (out / "by-id").mkdir(exist_ok=True)
    corpus = dc.draw_corpus(args.seed, args.tracks)
    summary = Summary("demo-corpus")
    with make_executor(cfg, args.workers or default_workers()) as pool:
        for track, result in run_items(pool, dc.write_track, corpus, str(out), desc="synthesising"):
            if isinstance(result, BaseException):
                summary.failed[type(result).__name__] += 1
                print(f"demo-corpus: {track.youtube_id} failed: {result}")
            elif result == "skipped":
                summary.skipped += 1
            else:
                summary.done += 1
    dc.write_csv(dc.truth_rows(corpus), out / "truth.csv")
    dc.write_csv(dc.dataset_rows(corpus, args.seed), out / "dataset.csv")
    summary.extra["corpus"] = str(out)
    print(summary.line())
    return 1 if summary.failed else 0
