"""The SQLite cache behind ``deepcurator dataset``: the dump scan and every API answer.

Three tables:

- ``scan``: one row naming the dump scan the ``kept`` rows come from (dump path, size,
  modification time and filter), whether it finished, and its counts;
- ``kept``: the kept releases (one row per release, videos and credits as JSON lists);
- ``answers``: one row per release fetched from the API: ``status`` ``ok`` (with the
  statistics), ``not_found`` (404) or ``failed`` (after every retry; fetched again next run),
  and ``fetched_at`` (Unix seconds, UTC).

Every answer is committed as soon as it arrives (WAL journal), so a run killed at any point
loses at most the request in flight. The token is never stored.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcurator.discogs.dump import Release

SCHEMA = """
CREATE TABLE IF NOT EXISTS scan (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    counts TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS kept (
    release_id INTEGER PRIMARY KEY,
    videos TEXT NOT NULL,
    artists TEXT NOT NULL,
    labels TEXT NOT NULL,
    styles TEXT NOT NULL,
    year INTEGER,
    master_id INTEGER
);
CREATE TABLE IF NOT EXISTS answers (
    release_id INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    have INTEGER, want INTEGER, rating_average REAL, rating_count INTEGER,
    price REAL, currency TEXT, num_for_sale INTEGER,
    reason TEXT,
    fetched_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Stats:
    """A release's statistics from the API. ``price``: the lowest marketplace price in
    ``currency`` (None when nothing is for sale); ``rating_average`` 0..5."""

    have: int
    want: int
    rating_average: float
    rating_count: int
    price: float | None
    currency: str
    num_for_sale: int


class Cache:
    """The cache file at ``path`` (created with its folder when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit; explicit transactions
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the dump scan --------------------------------------------------------------------

    def scan_state(self, key: str) -> tuple[bool, dict[str, int]]:
        """Whether the scan named ``key`` finished, and its counts (a new key clears ``kept``)."""
        row = self.db.execute("SELECT key, done, counts FROM scan WHERE id = 1").fetchone()
        if row is None or row[0] != key:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM kept")
            self.db.execute("INSERT OR REPLACE INTO scan (id, key, done, counts) VALUES (1, ?, 0, '{}')", (key,))
            self.db.execute("COMMIT")
            return False, {}
        return bool(row[1]), json.loads(row[2])

    def add_kept(self, releases: Iterable[Release]) -> int:
        """Store kept releases (replacing earlier rows of the same ids) in one transaction."""
        rows = [
            (r.id, json.dumps(r.videos), json.dumps(r.artists), json.dumps(r.labels), json.dumps(r.styles),
             r.year, r.master_id)
            for r in releases
        ]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO kept VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")
        return len(rows)

    def finish_scan(self, counts: dict[str, int]) -> None:
        self.db.execute("UPDATE scan SET done = 1, counts = ? WHERE id = 1", (json.dumps(counts),))

    def kept(self) -> Iterator[dict[str, Any]]:
        """Every kept release, by id, as a dict of its stored fields (lists decoded)."""
        cur = self.db.execute("SELECT release_id, videos, artists, labels, styles, year, master_id FROM kept "
                              "ORDER BY release_id")
        for rid, videos, artists, labels, styles, year, master in cur:
            yield {"id": rid, "videos": json.loads(videos), "artists": json.loads(artists),
                   "labels": json.loads(labels), "styles": json.loads(styles), "year": year, "master_id": master}

    def kept_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM kept").fetchone()[0])

    # -- API answers ----------------------------------------------------------------------

    def to_fetch(self, max_age_s: float | None, now: float | None = None) -> list[int]:
        """Kept release ids without a final answer (none, ``failed``, or older than
        ``max_age_s`` seconds when given), in id order."""
        now = time.time() if now is None else now
        cutoff = now - max_age_s if max_age_s is not None else -1.0
        rows = self.db.execute(
            "SELECT k.release_id FROM kept k LEFT JOIN answers a ON a.release_id = k.release_id "
            "WHERE a.release_id IS NULL OR a.status = 'failed' OR a.fetched_at < ? ORDER BY k.release_id",
            (cutoff,),
        )
        return [r[0] for r in rows]

    def put_answer(self, release_id: int, stats: Stats | None, status: str, reason: str | None = None,
                   fetched_at: float | None = None) -> None:
        """Record one answer and commit it (``status``: ok, not_found or failed)."""
        fetched_at = time.time() if fetched_at is None else fetched_at
        s = stats
        self.db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (release_id, status, s and s.have, s and s.want, s and s.rating_average, s and s.rating_count,
             s and s.price, s and s.currency, s and s.num_for_sale, reason, fetched_at),
        )

    def answered(self) -> Iterator[tuple[dict[str, Any], Stats, float]]:
        """Every kept release with an ``ok`` answer, by id: (kept fields, stats, fetched_at)."""
        cur = self.db.execute(
            "SELECT k.release_id, k.videos, k.artists, k.labels, k.styles, k.year, k.master_id, "
            "a.have, a.want, a.rating_average, a.rating_count, a.price, a.currency, a.num_for_sale, a.fetched_at "
            "FROM kept k JOIN answers a ON a.release_id = k.release_id WHERE a.status = 'ok' ORDER BY k.release_id"
        )
        for rid, videos, artists, labels, styles, year, master, *stats, at in cur:
            kept = {"id": rid, "videos": json.loads(videos), "artists": json.loads(artists),
                    "labels": json.loads(labels), "styles": json.loads(styles), "year": year, "master_id": master}
            yield kept, Stats(*stats), at

    def outcomes(self) -> dict[str, int]:
        """Kept releases by the state of their answer: ``ok``, ``not_found``, ``failed: <reason>``,
        ``unfetched``."""
        out: dict[str, int] = {}
        cur = self.db.execute(
            "SELECT a.status, a.reason, COUNT(*) FROM kept k LEFT JOIN answers a ON a.release_id = k.release_id "
            "GROUP BY a.status, a.reason"
        )
        for status, reason, n in cur:
            key = "unfetched" if status is None else f"failed: {reason}" if status == "failed" else status
            out[key] = out.get(key, 0) + int(n)
        return out

    def answers(self) -> dict[int, tuple[str, Stats | None, str | None, float]]:
        """Every stored answer: id -> (status, stats or None, reason, fetched_at)."""
        out = {}
        for row in self.db.execute("SELECT * FROM answers"):
            rid, status, have, want, avg, count, price, curr, nfs, reason, at = row
            stats = Stats(have, want, avg, count, price, curr, nfs) if status == "ok" else None
            out[rid] = (status, stats, reason, at)
        return out
