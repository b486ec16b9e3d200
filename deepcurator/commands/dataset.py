"""Rebuild dataset.csv from a Discogs releases dump and the Discogs API: keep the releases of
a genre with YouTube videos, fetch each one's have/want/rating/price (paced by the API's
quota, cached in SQLite so that a killed run resumes), write one row per (release, video)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from deepcurator.config import Config
from deepcurator.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dump", help="discogs_YYYYMMDD_releases.xml.gz (default: config dataset.dump)")
    parser.add_argument("--output", help="the table to write (default: config dataset.output)")
    parser.add_argument("--cache", help="the SQLite cache (default: config dataset.cache)")
    parser.add_argument("--genre", help="keep releases of this genre (default: config dataset.genre)")
    parser.add_argument("--max-age-days", type=float,
                        help="refetch cached answers older than this (default: config dataset.max_age_days)")


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run(args: argparse.Namespace, cfg: Config) -> int:
    import dataclasses

    from tqdm import tqdm

    from deepcurator.discogs.build import build

    c = cfg.dataset
    if args.genre:
        c = dataclasses.replace(c, genre=args.genre)
    if args.max_age_days is not None:
        c = dataclasses.replace(c, max_age_days=args.max_age_days)
    dump = args.dump or c.dump
    if not dump:
        raise InputError("no dump given (pass --dump or set dataset.dump); monthly dumps: https://data.discogs.com/")
    output, cache = Path(args.output or c.output), Path(args.cache or c.cache)
    logging.basicConfig(level=logging.WARNING, format="dataset: %(message)s", stream=sys.stderr)
    print(f"dataset: {c.genre} releases with YouTube videos from {dump}; cache {cache}; "
          f"API {c.api_url} ({'with' if c.token else 'without'} a token)")

    bars: dict[str, tqdm] = {}

    def on_scan(counts: dict[str, int]) -> None:
        bar = bars.get("scan") or bars.setdefault("scan", tqdm(desc="dump", unit=" records", file=sys.stderr))
        bar.update(counts["records"] - bar.n)
        bar.set_postfix(kept=counts.get("kept", 0), refresh=False)

    def on_fetch(done: int, total: int, eta_s: float) -> None:
        if "scan" in bars:  # the scan is over
            bars.pop("scan").close()
        bar = bars.get("fetch") or bars.setdefault(
            "fetch", tqdm(total=total, desc="API", unit=" releases", file=sys.stderr,
                          bar_format="{desc}: {n}/{total} {bar} [{elapsed}{postfix}]"))
        bar.update(done - bar.n)
        bar.set_postfix_str(f"ETA by the quota {_hms(eta_s)}", refresh=False)

    try:
        s = build(c, Path(dump), output, cache, on_scan=on_scan, on_fetch=on_fetch)
    finally:
        for bar in bars.values():
            bar.close()
    scan = s.scan
    left_out = ", ".join(f"{k} {v}" for k, v in sorted(scan.items()) if k not in ("records", "kept")) or "none"
    print(f"dataset: dump {'(cached scan) ' if s.scan_cached else ''}{scan.get('records', 0)} records, "
          f"kept {scan.get('kept', 0)} releases; left out: {left_out}")
    for bad in s.bad[:5]:
        print(f"dataset:   bad record #{bad.index} (id {bad.release_id}): {bad.reason}")
    failed = {k: v for k, v in s.outcomes.items() if k.startswith("failed")}
    failures = ", ".join(f"{k.removeprefix('failed: ')} {v}" for k, v in sorted(failed.items())) or "none"
    codes = ", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items())) or "none"
    print(f"dataset: API: fetched {s.fetched}, cached {s.cached}, not found {s.outcomes.get('not_found', 0)}, "
          f"failed {sum(failed.values())} ({failures}); {s.requests} requests ({codes}), {s.retries} retries")
    print(f"dataset: wrote {s.rows} rows ({s.outcomes.get('ok', 0)} releases) -> {output} ({s.seconds:.1f} s)")
    return 0
