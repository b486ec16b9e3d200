"""Download every labelled YouTube id (labels.csv) as audio/<id>.mp3 into the store, with
yt-dlp and ffmpeg, in parallel. Ids already stored are skipped, and so are ids that failed
before (see failures/download.jsonl) unless --retry-failed names their reason."""

from __future__ import annotations

import argparse

from deepcurator.commands import int_in
from deepcurator.config import Config
from deepcurator.stages.download import REASONS, RETRYABLE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-failed", nargs="*", metavar="REASON", choices=REASONS,
        help=f"also retry ids that failed before: with no REASON the retryable ones ({', '.join(RETRYABLE)}); "
             f"reasons: {', '.join(REASONS)}",
    )
    parser.add_argument("--workers", type=int_in(1),
                        help="parallel downloads (default: config download.workers; on a Dask cluster, per machine)")
    parser.add_argument("--limit", type=int_in(0), help="download at most this many ids in this run")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.stages import download
    from deepcurator.store import open_store

    retry = () if args.retry_failed is None else (args.retry_failed or RETRYABLE)
    store = open_store(cfg)
    summary = download.run(cfg, store, retry=retry, limit=args.limit, workers=args.workers)
    print(summary.line())
    return 0
