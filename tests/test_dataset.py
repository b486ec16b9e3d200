"""`deepcurator dataset`: a gzipped releases dump written here and a Discogs API stand-in on
loopback (documented JSON shapes, quota headers, 429, 404, 5xx): the table it builds, that
`deepcurator labels` accepts it, the quota, kill and resume, refreshes, and the token."""

from __future__ import annotations

import csv
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from deepcurator import config as config_mod
from deepcurator.discogs import build as build_mod
from deepcurator.discogs.dump import BadRecord, Filter, Release, scan, youtube_id

from tests.helpers.cli import cli_env, run_cli
from tests.helpers.discogs import ApiServer, Rel, resource, write_dump, yt

TOKEN = "dcTestTok3n-9f8e7d6c5b4a"


def vid(i: int, k: int) -> str:
    return f"v{i:08d}_{k}"  # 11 characters, like a YouTube id


def corpus() -> tuple[list[Rel], dict[int, dict], list[dict[str, str]]]:
    """The dump's releases, the API's resources, and the rows the table must hold."""
    rels: list[Rel] = []
    for i in range(1, 31):
        videos = [yt(vid(i, 0))]
        if i % 4 == 0:
            videos.append(f"https://youtu.be/{vid(i, 1)}")
        if i % 5 == 0:
            videos.append(yt(vid(i, 0)))  # the same video twice: one row
        rels.append(Rel(i, styles=("Techno", "House") if i % 2 else ("Ambient",), videos=tuple(videos),
                        artists=((100 + i % 7, f"Artist {i % 7}"), (500, "Guest")),
                        labels=((200 + i % 5, f"Label, {i % 5} & Co"),), master_id=1000 + i if i % 3 else None,
                        released="1999-03-00" if i % 2 else "2004"))
    rels += [
        Rel(31, genres=("Rock",), videos=(yt(vid(31, 0)),)),
        Rel(32, genres=("Rock", "Pop"), videos=(yt(vid(32, 0)),)),
        Rel(33, videos=()),  # Electronic without videos
        Rel(34, videos=("https://vimeo.com/12345",)),  # a video, but not on YouTube
        Rel(35, genres=("Rock", "Electronic"), videos=(yt(vid(35, 0)),)),
        Rel("x36", videos=(yt(vid(36, 0)),)),  # malformed: the id is not a number
        Rel(37, videos=(yt(vid(37, 0)),), title="Drum & Bass", raw_title=True),  # malformed: broken XML
        Rel(38, videos=(yt(vid(38, 0)),)),  # the API does not know it: 404
        Rel(39, videos=(yt(vid(39, 0)),)),  # the API fails on it: 503 every time
        Rel(40, videos=(yt(vid(40, 0)),)),  # nothing for sale: lowest_price null -> price 0
    ]
    api: dict[int, dict] = {}
    for i in [*range(1, 31), 35, 39, 40]:
        api[i] = resource(i, have=10 + 3 * i, want=(i * 7) % 50 + 1, avg=round(3 + (i % 20) / 10, 2), count=i,
                          price=None if i == 40 else 2.5 + i, for_sale=0 if i == 40 else i % 4)
    expected = []
    for r in rels:
        if not isinstance(r.id, int) or r.id not in api or r.id == 39:
            continue
        if "Electronic" not in r.genres:
            continue
        seen = []
        for v in r.videos:
            y = youtube_id(v)
            if y and y not in seen:
                seen.append(y)
        c = api[r.id]["community"]
        for y in seen:
            expected.append({
                "discogs_id": str(r.id), "have": str(c["have"]), "want": str(c["want"]),
                "rating_average": str(c["rating"]["average"]).removesuffix(".0"),
                "rating_count": str(c["rating"]["count"]),
                "price": ("0" if api[r.id]["lowest_price"] is None
                          else str(api[r.id]["lowest_price"]).removesuffix(".0")),
                "youtube_id": y, "artist_id": str(r.artists[0][0]), "artist_name": r.artists[0][1],
                "artist_ids": "|".join(str(a) for a, _ in r.artists), "label_id": str(r.labels[0][0]),
                "label_name": r.labels[0][1], "year": r.released[:4], "styles": "|".join(r.styles),
                "master_id": "" if r.master_id is None else str(r.master_id), "currency": "USD",
                "num_for_sale": str(api[r.id]["num_for_sale"]),
            })
    return rels, api, expected


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def check_table(path: Path, expected: list[dict[str, str]]) -> None:
    rows = read_table(path)
    assert list(rows[0])[:7] == ["discogs_id", "have", "want", "rating_average", "rating_count", "price", "youtube_id"]
    assert [{k: r[k] for k in expected[0]} for r in rows] == expected
    assert all(r["fetched_at"].endswith("Z") for r in rows)


def dataset_cfg(tmp_path: Path, server: ApiServer, **extra: object) -> dict:
    return {"dataset": {"api_url": server.url, "cache": str(tmp_path / "cache.sqlite"),
                        "output": str(tmp_path / "dataset.csv"), "rate_window_s": server.window_s,
                        "retry_backoff_s": 0.05, "max_retries": 2, **extra},
            "store": {"path": str(tmp_path / "store")}}


# -- the dump ----------------------------------------------------------------------------

def test_dump_records_are_read_filtered_and_bad_ones_reported(tmp_path: Path) -> None:
    rels, _, _ = corpus()
    dump = write_dump(tmp_path / "d.xml.gz", rels)
    counts: dict[str, int] = {}
    bad: list[BadRecord] = []
    kept = list(scan(dump, Filter("Electronic"), counts, bad))
    assert [r.id for r in kept] == [*range(1, 31), 35, 38, 39, 40]
    assert counts == {"records": 40, "kept": 34, "other genre": 2, "no YouTube video": 2,
                      "bad id": 1, "malformed XML": 1}
    assert [(b.index, b.reason, b.release_id) for b in bad] == [(36, "bad id", "x36"), (37, "malformed XML", "37")]
    r4: Release = kept[3]
    assert r4.artists == ((104, "Artist 4"), (500, "Guest"))  # the track artist 999999 is not one
    assert r4.labels == ((204, "Label, 4 & Co"),) and r4.year == 2004 and r4.master_id == 1004
    assert r4.videos == (vid(4, 0), vid(4, 1)) and "Vinyl" in r4.formats and '12"' in r4.formats
    assert kept[4].videos == (vid(5, 0),)  # listed twice in the dump
    by = lambda f: [r.id for r in scan(dump, f)]  # noqa: E731 - a one-line shorthand for the asserts below
    assert by(Filter("Electronic", styles="Ambient")) == [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]
    assert by(Filter("Electronic", years="1990-1999", formats="cd")) == []
    assert by(Filter("Electronic", years="2004,1000-1001")) == list(range(2, 31, 2))
    assert by(Filter("Rock")) == [31, 32, 35]


def test_youtube_ids_from_every_url_form() -> None:
    assert youtube_id("https://www.youtube.com/watch?v=abcdefghijk") == "abcdefghijk"
    assert youtube_id("http://youtube.com/watch?feature=x&v=A-b_cdefghi") == "A-b_cdefghi"
    assert youtube_id("https://youtu.be/abcdefghijk?t=3") == "abcdefghijk"
    assert youtube_id("https://www.youtube.com/embed/abcdefghijk") == "abcdefghijk"
    assert youtube_id("https://www.youtube.com/watch?v=tooshort") is None
    assert youtube_id("https://vimeo.com/12345") is None


# -- the command end to end --------------------------------------------------------------

@pytest.mark.slow
def test_dataset_command_builds_a_table_that_labels_accepts(tmp_path: Path) -> None:
    rels, api, expected = corpus()
    dump = write_dump(tmp_path / "discogs_20250101_releases.xml.gz", rels)
    with ApiServer(api, limit=100, window_s=1.0, token=TOKEN, broken={39}) as server:
        cfg = tmp_path / "config.yml"
        cfg.write_text(yaml.safe_dump(dataset_cfg(tmp_path, server)))
        res = run_cli("dataset", "--config", str(cfg), "--dump", str(dump), cwd=tmp_path, timeout=120,
                      DEEPCURATOR_DATASET_TOKEN=TOKEN)
    assert res.returncode == 0, res.stderr
    check_table(tmp_path / "dataset.csv", expected)
    out = res.stdout
    assert "40 records, kept 34 releases" in out and "bad id 1" in out and "malformed XML 1" in out
    assert "bad record #37 (id 37): malformed XML" in out
    assert "fetched 33, cached 0, not found 1, failed 1 (http 503 1)" in out
    assert f"wrote {len(expected)} rows" in out
    assert all(r.authorized and r.user_agent.startswith("DeepCurator/") and "curr_abbr=USD" in r.query
               for r in server.log)
    # the token: sent, never shown, never written
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in res.stdout + res.stderr
    # `deepcurator labels` accepts the table
    lab = run_cli("labels", "--config", str(cfg), "--dataset", str(tmp_path / "dataset.csv"), "-n", "5",
                  cwd=tmp_path, timeout=300)
    assert lab.returncode == 0, lab.stderr
    labels = read_table(tmp_path / "store" / "labels.csv")
    assert len(labels) == 10 and {r["youtube_id"] for r in labels} <= {r["youtube_id"] for r in expected}


def test_a_refused_token_is_one_line_and_not_echoed(tmp_path: Path) -> None:
    rels, api, _ = corpus()
    dump = write_dump(tmp_path / "d.xml.gz", rels[:3])
    with ApiServer(api, token=TOKEN) as server:
        cfg = tmp_path / "config.yml"
        cfg.write_text(yaml.safe_dump(dataset_cfg(tmp_path, server, token="wrong-" + TOKEN)))
        res = run_cli("dataset", "--config", str(cfg), "--dump", str(dump), cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert "refused the token (401)" in res.stderr and "Traceback" not in res.stderr
    assert TOKEN not in res.stdout + res.stderr and not (tmp_path / "dataset.csv").exists()


# -- the quota ---------------------------------------------------------------------------

@pytest.mark.slow
def test_the_client_keeps_to_the_quota_the_headers_announce(tmp_path: Path) -> None:
    """10 requests per 1-s window on the server; the client starts out assuming Discogs'
    60 and must learn 10 from the headers. The only 429 it sees is the one injected."""
    rels, api, expected = corpus()
    dump = write_dump(tmp_path / "d.xml.gz", rels)
    with ApiServer(api, limit=10, window_s=1.0, token=TOKEN, broken={39}, inject={3: 429, 6: 500}) as server:
        cfg = config_mod.from_dict(dataset_cfg(tmp_path, server, token=TOKEN))
        started = time.monotonic()
        summary = build_mod.build(cfg.dataset, dump, tmp_path / "dataset.csv", tmp_path / "cache.sqlite")
        elapsed = time.monotonic() - started
    statuses = Counter((r.status, r.injected) for r in server.log)
    assert statuses[(429, False)] == 0, statuses  # never beyond the quota
    assert statuses[(429, True)] == 1 and statuses[(500, True)] == 1
    assert server.max_per_window() <= 10
    n = len(server.log)
    assert n == 34 + 2 + 2  # each kept release once, two retries after the injections, 39 three times
    # ... and not needlessly slow either: 9 a window is the pace, plus the back-offs
    assert elapsed < n / 9 * 1.0 * 1.5 + 2, elapsed
    check_table(tmp_path / "dataset.csv", expected)
    assert summary.outcomes == {"ok": 32, "not_found": 1, "failed: http 503": 1}


# -- kill and resume ---------------------------------------------------------------------

def test_a_killed_run_resumes_without_fetching_anything_twice(tmp_path: Path) -> None:
    rels, api, expected = corpus()
    dump = write_dump(tmp_path / "d.xml.gz", rels)
    with ApiServer(api, limit=1000, window_s=1.0, token=TOKEN, broken={39}, block_after=12) as server:
        cfg = tmp_path / "config.yml"
        cfg.write_text(yaml.safe_dump(dataset_cfg(tmp_path, server)))
        cmd = [sys.executable, "-m", "deepcurator", "dataset", "--config", str(cfg), "--dump", str(dump)]
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(DEEPCURATOR_DATASET_TOKEN=TOKEN),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert server.blocked.wait(60), "the client never reached the 13th release"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert server.served == list(range(1, 13))
        assert not (tmp_path / "dataset.csv").exists()  # nothing half-written
        server.block_after = None
        server.release_block.set()
        res = run_cli("dataset", "--config", str(cfg), "--dump", str(dump), cwd=tmp_path, timeout=120,
                      DEEPCURATOR_DATASET_TOKEN=TOKEN)
    assert res.returncode == 0, res.stderr
    assert "(cached scan) 40 records" in res.stdout
    assert "fetched 21, cached 12, not found 1, failed 1" in res.stdout
    twice = {rid: n for rid, n in Counter(server.served).items() if n > 1}
    assert not twice, f"fetched twice: {twice}"
    assert sorted(server.served) == sorted([*range(1, 31), 35, 38, 40])
    check_table(tmp_path / "dataset.csv", expected)


def test_a_second_run_fetches_nothing_and_max_age_refreshes_old_answers(tmp_path: Path) -> None:
    rels, api, _expected = corpus()
    dump = write_dump(tmp_path / "d.xml.gz", rels[:10])
    with ApiServer(api, limit=1000, window_s=1.0) as server:
        cfg = config_mod.from_dict(dataset_cfg(tmp_path, server)).dataset
        out, cache = tmp_path / "dataset.csv", tmp_path / "cache.sqlite"
        build_mod.build(cfg, dump, out, cache)
        assert len(server.log) == 10
        again = build_mod.build(cfg, dump, out, cache)
        assert len(server.log) == 10 and again.cached == 10 and again.scan_cached
        with sqlite3.connect(cache) as db:  # three answers are two days old
            db.execute("UPDATE answers SET fetched_at = fetched_at - 2 * 86400 WHERE release_id IN (2, 5, 7)")
        api[5]["community"]["have"] = 999
        import dataclasses

        refreshed = build_mod.build(dataclasses.replace(cfg, max_age_days=1.0), dump, out, cache)
    assert [r.release_id for r in server.log[10:]] == [2, 5, 7]
    assert refreshed.fetched == 3 and refreshed.cached == 7
    assert {r["have"] for r in read_table(out) if r["discogs_id"] == "5"} == {"999"}
