"""Turn every stored audio file (audio/<id>.<ext>) into its log-mel features (features/<id>.npy).

Tracks run in parallel, one per core (process.workers). Tracks whose features exist are
skipped, so a killed run resumes where it stopped; failures (undecodable, too_short, silent,
timeout, error) go to failures/process.jsonl and never stop the stage.
"""

from __future__ import annotations

import argparse

from deepcurator.commands import int_in
from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int_in(0), default=None,
                        help="tracks processed in parallel (default: process.workers; 0 = one per core; on a Dask "
                             "cluster, per machine, 0 = as many as its workers' threads)")
    parser.add_argument("--retry-all", action="store_true",
                        help="also retry tracks that failed for good before (undecodable, too_short, silent)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.stages import process
    from deepcurator.store import open_store

    summary = process.run(cfg, open_store(cfg), workers=args.workers, retry_all=args.retry_all)
    print(summary.line())
    return 0
