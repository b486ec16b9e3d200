"""Train the CNN on the stored features and write a run to runs/<run_id>/: the best model by
validation ROC-AUC (model.keras), checkpoints, TensorBoard logs, then the evaluation on the
test split (metrics.json, plots, MODEL_CARD.md). A killed run continues with --resume."""

from __future__ import annotations

import argparse

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", help="name of the new run (default: the UTC time, YYYYmmdd-HHMMSS)")
    parser.add_argument("--resume", nargs="?", const="auto", metavar="RUN",
                        help="continue a killed run from its last checkpoint (default: the newest unfinished run)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.store import open_store
    from deepcurator.training.loop import train

    print(train(cfg, open_store(cfg), run_id=args.run_id, resume=args.resume).line())
    return 0
