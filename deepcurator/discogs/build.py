"""Building dataset.csv: scan the dump, fetch the statistics, write the table.

1. **Scan** (:func:`scan_dump`): stream the releases dump and store the kept releases in the
   cache. A finished scan of the same dump (path, size, modification time) with the same
   filter is not repeated; an unfinished one starts over.
2. **Fetch** (:func:`fetch_stats`): ask the API for every kept release without a final
   answer (or with one older than ``max_age_days``), paced by the quota, each answer
   committed as it arrives: a killed run resumes where it stopped.
3. **Write** (:func:`write_table`): one row per (release, YouTube video) with an ``ok``
   answer, in the original table's columns first (:data:`COLUMNS`), written to a temp file
   beside the output and renamed over it.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from deepcurator.config import DatasetConfig
from deepcurator.discogs.api import DiscogsClient
from deepcurator.discogs.cache import Cache
from deepcurator.discogs.dump import BadRecord, Filter, scan

log = logging.getLogger(__name__)

ORIGINAL = ("discogs_id", "have", "want", "rating_average", "rating_count", "price", "youtube_id")
EXTRA = ("artist_id", "artist_name", "artist_ids", "label_id", "label_name", "label_ids", "year", "styles",
         "master_id", "currency", "num_for_sale", "fetched_at")
COLUMNS = ORIGINAL + EXTRA
"""The table's columns: the original schema, then the first credited artist and label (the
grouping keys), every artist and label id (``|``-separated), the year, the styles
(``|``-separated), the master id, the price's currency, the number of copies for sale and
when the statistics were fetched (ISO 8601, UTC). ``price`` is 0 when nothing is for sale,
as in the original table (``labels`` drops zero prices)."""

BATCH = 1000  # kept releases stored per transaction while scanning


@dataclass
class BuildSummary:
    """What a build did. ``scan``: records read, kept and left out by reason (the stored
    counts when the scan was cached); ``fetched``: answers received in this run;
    ``cached``: kept releases answered from the cache without a request; ``outcomes``: every
    kept release by the state of its answer; ``rows``: rows written."""

    scan: dict[str, int] = field(default_factory=dict)
    scan_cached: bool = False
    bad: list[BadRecord] = field(default_factory=list)
    kept: int = 0
    fetched: int = 0
    cached: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    retries: int = 0
    rows: int = 0
    output: Path | None = None
    seconds: float = 0.0


def scan_key(dump: Path, keep: Filter) -> str:
    """Names a scan: the dump's absolute path, size and modification time, and the filter."""
    st = dump.stat()
    return f"{dump.resolve()}|{st.st_size}|{st.st_mtime_ns}|{keep.signature()}"


def scan_dump(cache: Cache, dump: Path, keep: Filter, summary: BuildSummary,
              on_progress: Callable[[dict[str, int]], None] | None = None, every: int = 10000) -> None:
    """Step 1: stream ``dump`` into the cache's kept releases (skipped when already done)."""
    done, counts = cache.scan_state(scan_key(dump, keep))
    if done:
        summary.scan, summary.scan_cached = counts, True
        log.info("dump scan cached: %d records, %d kept", counts.get("records", 0), counts.get("kept", 0))
        return
    counts = {}
    batch = []
    last = 0
    for release in scan(dump, keep, counts, summary.bad):
        batch.append(release)
        if len(batch) >= BATCH:
            cache.add_kept(batch)
            batch = []
        if on_progress and counts["records"] - last >= every:
            last = counts["records"]
            on_progress(counts)
    cache.add_kept(batch)
    if on_progress:
        on_progress(counts)
    cache.finish_scan(counts)
    summary.scan = counts


def fetch_stats(cache: Cache, client: DiscogsClient, max_age_days: float | None, summary: BuildSummary,
                on_progress: Callable[[int, int, float], None] | None = None) -> None:
    """Step 2: fetch every kept release that needs it; ``on_progress(done, total, eta_s)``
    after each, the ETA being the releases left times the quota's seconds per request."""
    max_age_s = None if max_age_days is None else max_age_days * 86400.0
    todo = cache.to_fetch(max_age_s)
    summary.kept = cache.kept_count()
    summary.cached = summary.kept - len(todo)
    for done, rid in enumerate(todo, 1):
        answer = client.release(rid)
        cache.put_answer(rid, answer.stats, answer.status, answer.reason)
        if answer.status != "failed":
            summary.fetched += 1
        if on_progress:
            on_progress(done, len(todo), (len(todo) - done) * client.pacer.interval_s)
    summary.requests = client.counts.requests
    summary.statuses = dict(client.counts.statuses)
    summary.retries = client.counts.retries


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def write_table(cache: Cache, output: Path) -> int:
    """Step 3: write the table atomically; returns the number of rows."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    rows = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for kept, s, at in cache.answered():
                artists, labels = kept["artists"], kept["labels"]
                extra = [
                    artists[0][0] if artists else "", artists[0][1] if artists else "",
                    "|".join(str(a[0]) for a in artists),
                    labels[0][0] if labels else "", labels[0][1] if labels else "",
                    "|".join(str(lab[0]) for lab in labels),
                    kept["year"] if kept["year"] is not None else "", "|".join(kept["styles"]),
                    kept["master_id"] if kept["master_id"] is not None else "",
                    s.currency, s.num_for_sale, _iso(at),
                ]
                for video in kept["videos"]:
                    writer.writerow([kept["id"], s.have, s.want, _num(s.rating_average), s.rating_count,
                                     _num(s.price or 0.0), video, *extra])
                    rows += 1
        os.replace(tmp, output)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return rows


def build(cfg: DatasetConfig, dump: Path, output: Path, cache_path: Path, client: DiscogsClient | None = None,
          on_scan: Callable[[dict[str, int]], None] | None = None,
          on_fetch: Callable[[int, int, float], None] | None = None) -> BuildSummary:
    """The three steps; the cache at ``cache_path`` makes a second run resume."""
    started = time.monotonic()
    summary = BuildSummary(output=output)
    keep = Filter(cfg.genre, cfg.styles, cfg.years, cfg.formats)
    client = client or DiscogsClient(cfg)
    with Cache(cache_path) as cache:
        scan_dump(cache, dump, keep, summary, on_scan)
        fetch_stats(cache, client, cfg.max_age_days, summary, on_fetch)
        summary.outcomes = cache.outcomes()
        summary.rows = write_table(cache, output)
    summary.seconds = time.monotonic() - started
    return summary
