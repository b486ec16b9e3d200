"""What splitting by artist does to the measured AUC, on the one data here with artists and
audio: a demo corpus with artists (`deepcurator demo-corpus --artists K`: an artist's tracks
share a sound and part of their quality; docs/REFERENCE.md, "Honest splits").

1. the corpus, then `labels`, `download` (yt-dlp from the corpus' file:// URLs) and
   `process`, each run as a user runs it, into a local store under --workdir (a rerun
   resumes);
2. bench_seeds_splits on that store with `--split-by track artist`: for each of K split
   seeds, the band-statistics and strong baselines (and, with --train-seeds, the CNN) fitted
   on the train split, the epoch or setting chosen on validation, scored on the test tracks.

    python bench/bench_split_by.py --workdir /tmp/split_by --tracks 240 --artists 40 --k 10 --train-seeds 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_seeds_splits import seeds_by_splits, summary_lines  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/bench_split_by"))
    ap.add_argument("--tracks", type=int, default=240)
    ap.add_argument("--artists", type=int, default=40)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--label-fraction", type=float, default=0.3)
    ap.add_argument("--k", type=int, default=10, help="split seeds")
    ap.add_argument("--train-seeds", type=int, default=0, help="CNN trainings per split (0: baselines only)")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--head", default="global_max", choices=["flatten", "global_max"])
    args = ap.parse_args()

    from deepcurator.demo.pipeline import DemoSettings, demo_config, run_command

    work = args.workdir.absolute()
    work.mkdir(parents=True, exist_ok=True)
    corpus, store = work / "corpus", work / "store"
    config = work / "config.yml"  # the demo's configuration (store, labels, download) for this folder
    settings = DemoSettings(workdir=work, tracks=args.tracks, seed=args.seed, label_fraction=args.label_fraction)
    config.write_text(yaml.safe_dump(demo_config(settings), sort_keys=False))
    t0 = time.monotonic()
    run_command(["demo-corpus", "--out", str(corpus), "--tracks", str(args.tracks), "--seed", str(args.seed),
                 "--artists", str(args.artists)], config, work)
    for stage in ("labels", "download", "process"):
        run_command([stage], config, work)
    print(f"store ready in {time.monotonic() - t0:.0f} s: {store}", flush=True)
    results = seeds_by_splits(store, ["track", "artist"], args.k, args.train_seeds, args.epochs, args.width,
                              head=args.head)
    print(f"\n{args.tracks} tracks by {args.artists} artists (seed {args.seed}), N = "
          f"{max(4, round(args.label_fraction * args.tracks))} a class:")
    for line in summary_lines(results):
        print(line)


if __name__ == "__main__":
    main()
