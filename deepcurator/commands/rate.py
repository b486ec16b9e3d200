"""Score audio files offline with the served model and the same code as /predict: files or
folders (searched recursively for audio files), a table sorted by score, --csv and --json.
Unreadable files are listed as skipped; they do not stop the run."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from deepcurator.config import Config

AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff",
                  ".wma", ".webm", ".mka", ".mp4", ".mp2", ".ac3", ".alac", ".ape", ".wv"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders (searched recursively)")
    parser.add_argument("--model", help="runs/latest, runs/<run_id>, a .keras file or an http(s)/s3 URL "
                                        "(default: config serve.model)")
    parser.add_argument("--csv", metavar="FILE", help="also write every row (skipped files too) to this CSV file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def find_audio(paths: list[str]) -> list[Path]:
    """Named files as given, plus every file with an audio suffix under named folders (sorted)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found.append(p)
    return list(dict.fromkeys(found))


def format_table(rows: list[dict[str, object]]) -> str:
    """Scored rows as an aligned text table (rows already sorted)."""
    lines = [f"{'score':>6}  {'label':<8}  {'duration':>8}  {'slices':>6}  file"]
    for r in rows:
        lines.append(f"{r['score']:>6.2f}  {r['label']:<8}  {r['duration_s']:>7.1f}s  {r['slices']:>6}  {r['file']}")
    return "\n".join(lines)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from tqdm import tqdm

    from deepcurator import native_stderr
    from deepcurator.errors import InputError
    from deepcurator.parallel import Summary
    from deepcurator.serving.scoring import load_scorer, score_file

    native_stderr.install()  # the mp3 decoder's per-frame notes would break the table
    summary = Summary("rate")
    files = find_audio(args.paths)
    scorer = load_scorer(cfg, args.model)
    s = cfg.serve
    scored: list[dict[str, object]] = []
    skipped: list[dict[str, object]] = []
    for path in tqdm(files, desc="rate", unit="file", dynamic_ncols=True, file=sys.stderr):
        if not path.is_file():
            reason = "not found"
        else:
            try:
                result = score_file(scorer, path, decode_timeout=s.decode_timeout_s, max_duration_s=s.max_duration_s,
                                    over_duration=s.over_duration)
            except (InputError, OSError) as exc:
                reason = str(exc)
            else:
                scored.append({"file": str(path), "score": round(result.score, 2), "label": result.label,
                               "duration_s": round(result.duration_s, 2), "slices": len(result.slices),
                               "truncated": result.truncated})
                summary.done += 1
                continue
        skipped.append({"file": str(path), "reason": reason})
        summary.skipped += 1
    scored.sort(key=lambda r: (-float(r["score"]), str(r["file"])))
    if args.csv:
        _write_csv(Path(args.csv), scored, skipped)
    if args.json:
        print(json.dumps({"run_id": scorer.run_id, "aggregation": scorer.aggregation, "scored": scored,
                          "skipped": skipped}, indent=2))
    else:
        print(f"model run {scorer.run_id}, aggregation {scorer.aggregation}")
        print(format_table(scored))
        for row in skipped:
            print(f"skipped  {row['file']}: {row['reason']}")
    summary.extra["model"] = scorer.run_id
    print(summary.line(), file=sys.stderr)
    return 0 if scored or not files else 1


def _write_csv(dest: Path, scored: list[dict[str, object]], skipped: list[dict[str, object]]) -> None:
    """file,score,label,duration_s,slices,truncated,status,reason; written atomically."""
    buf = io.StringIO()
    fields = ["file", "score", "label", "duration_s", "slices", "truncated", "status", "reason"]
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in scored:
        writer.writerow({**row, "status": "scored", "reason": ""})
    for row in skipped:
        writer.writerow({**row, "status": "skipped"})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    tmp.write_text(buf.getvalue())
    os.replace(tmp, dest)
