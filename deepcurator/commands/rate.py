"""Score audio files offline with the served model and the same code as /predict: files or
folders (searched recursively for audio files), a table sorted by score, --json.
Decoding and features run in worker processes while the model scores, so every core is busy.
With --csv or --jsonl each result is appended to the file as it comes, and a rerun with the same
file skips the files it already rates (--rescore rates them again); the file ends sorted by
score. Files that cannot be scored are listed as failed, with the reason; they do not stop the run."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from deepcurator.commands import int_in
from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    parser.add_argument("--model", help="runs/latest, runs/<run_id>, a .keras file or an http(s)/s3 URL "
                                        "(default: config serve.model)")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--csv", metavar="FILE", help="append every row (failed files too) to this CSV file as it "
                                                   "comes; a rerun skips the files it rates")
    out.add_argument("--jsonl", metavar="FILE", help="the same as JSON lines")
    parser.add_argument("--rescore", action="store_true",
                        help="rate every file again, even those the --csv/--jsonl file already rates")
    parser.add_argument("--workers", type=int_in(1, 1024), metavar="N",
                        help="processes that decode and compute features (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def format_table(rows: list[dict[str, object]]) -> str:
    """Scored rows as an aligned text table (rows already sorted)."""
    lines = [f"{'score':>6}  {'label':<8}  {'duration':>8}  {'slices':>6}  file"]
    for r in rows:
        lines.append(f"{r['score']:>6.2f}  {r['label']:<8}  {r['duration_s']:>7.1f}s  {r['slices']:>6}  {r['file']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from pathlib import Path

    from deepcurator import native_stderr
    from deepcurator.serving.rating import Output, find_audio, rate
    from deepcurator.serving.scoring import load_scorer

    native_stderr.install()  # the mp3 decoder's per-frame notes would break the table
    files = find_audio(args.paths)
    output = None
    if args.csv:
        output = Output(Path(args.csv), "csv")
    elif args.jsonl:
        output = Output(Path(args.jsonl), "jsonl")
    scorer = load_scorer(cfg, args.model)
    result = rate(files, scorer, cfg.serve, workers=args.workers, output=output, rescore=args.rescore)
    rows = [asdict(r) for r in result.rated]
    if args.json:
        print(json.dumps({**result.to_json(), "model": scorer.info.to_json()}, indent=2))
    else:
        print(f"model {scorer.info.line()}, from {scorer.origin}; aggregation {result.aggregation}")
        print(format_table(rows))
        for f in result.failed:
            print(f"failed   {f.file}: {f.detail}")
    print(result.summary.line(), file=sys.stderr)
    return 0 if result.rated or not files else 1
