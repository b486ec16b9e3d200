"""Export a finished training run into model/, the served model's home: model.keras,
MODEL_CARD.md, metrics.json, feature_spec.json, calibration.json and model.json (which model it
is: run id, sha256, what it was trained on). The server and `rate` use model/model.keras when
serve.model is left at its default and the store has no finished run."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", default="latest", help="the run: an id or latest (default: latest)")
    parser.add_argument("--to", type=Path, metavar="DIR",
                        help="the folder (default: ./model, else the project's model/ folder)")
    parser.add_argument("--force", action="store_true",
                        help="replace a model trained on real data with one trained on the demo corpus")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator import shipped
    from deepcurator.stages import export
    from deepcurator.store import open_store

    dest = args.to or shipped.find(shipped.MODEL_DIR) or Path(shipped.MODEL_DIR)
    print(export.run(open_store(cfg), args.run, dest, force=args.force).line())
    return 0
