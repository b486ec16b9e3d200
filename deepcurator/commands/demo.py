"""Run the whole pipeline offline on a generated corpus: labels, download (yt-dlp from
file:// URLs), process, train, evaluate, and a scored track from the running server.
Rerunning resumes: finished stages do no work twice."""

from __future__ import annotations

import argparse
from pathlib import Path

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deepcurator.demo.pipeline import DemoSettings

    d = DemoSettings()
    parser.add_argument("--workdir", type=Path, default=d.workdir, help=f"work folder (default: {d.workdir})")
    parser.add_argument("--tracks", type=int, default=d.tracks, help=f"tracks to synthesise (default: {d.tracks})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"corpus and training seed (default: {d.seed})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default: {d.epochs})")
    parser.add_argument("--width", type=float, default=d.width, help=f"model width multiplier (default: {d.width})")
    parser.add_argument("--model-dir", type=Path, default=d.model_dir,
                        help=f"where the trained model is exported (default: {d.model_dir})")
    parser.add_argument("--head", choices=("flatten", "global_max"), default=d.head,
                        help=f"model head, train.head (default: {d.head})")
    parser.add_argument("--serve", action="store_true", help="keep the server running at the end")
    parser.add_argument("--fresh", action="store_true", help="delete the work folder first")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.demo.pipeline import DemoSettings, clean, run_demo

    if args.fresh:
        clean(args.workdir)
    return run_demo(DemoSettings(workdir=args.workdir, tracks=args.tracks, seed=args.seed, epochs=args.epochs,
                                 width=args.width, head=args.head, serve=args.serve, model_dir=args.model_dir),
                    report=lambda line: print(line, flush=True))
