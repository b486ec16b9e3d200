"""Score audio files offline with the served model and the same code as /predict: files or
folders (searched recursively for audio files), a table sorted by score, --csv and --json.
Files that cannot be scored are listed as failed, with the reason; they do not stop the run."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from dataclasses import asdict
from pathlib import Path

from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    parser.add_argument("--model", help="runs/latest, runs/<run_id>, a .keras file or an http(s)/s3 URL "
                                        "(default: config serve.model)")
    parser.add_argument("--csv", metavar="FILE", help="also write every row (failed files too) to this CSV file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def format_table(rows: list[dict[str, object]]) -> str:
    """Scored rows as an aligned text table (rows already sorted)."""
    lines = [f"{'score':>6}  {'label':<8}  {'duration':>8}  {'slices':>6}  file"]
    for r in rows:
        lines.append(f"{r['score']:>6.2f}  {r['label']:<8}  {r['duration_s']:>7.1f}s  {r['slices']:>6}  {r['file']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator import native_stderr
    from deepcurator.serving.rating import find_audio, rate
    from deepcurator.serving.scoring import load_scorer

    native_stderr.install()  # the mp3 decoder's per-frame notes would break the table
    files = find_audio(args.paths)
    scorer = load_scorer(cfg, args.model)
    result = rate(files, scorer, cfg.serve)
    rows = [asdict(r) for r in result.rated]
    if args.csv:
        _write_csv(Path(args.csv), rows, [asdict(f) for f in result.failed])
    if args.json:
        print(json.dumps({**result.to_json(), "model": scorer.info.to_json()}, indent=2))
    else:
        print(f"model {scorer.info.line()}, from {scorer.origin}; aggregation {result.aggregation}")
        print(format_table(rows))
        for f in result.failed:
            print(f"failed   {f.file}: {f.detail}")
    print(result.summary.line(), file=sys.stderr)
    return 0 if result.rated or not files else 1


def _write_csv(dest: Path, scored: list[dict[str, object]], failed: list[dict[str, object]]) -> None:
    """file,score,label,duration_s,slices,truncated,status,reason,detail; written atomically."""
    from deepcurator.store import atomic_write

    buf = io.StringIO()
    fields = ["file", "score", "label", "duration_s", "slices", "truncated", "status", "reason", "detail"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in scored:
        writer.writerow({**row, "status": "scored", "reason": "", "detail": ""})
    for row in failed:
        writer.writerow({**row, "status": "failed"})
    atomic_write(dest, lambda out: out.write(buf.getvalue().encode()))
