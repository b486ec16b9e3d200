"""The download stage with the real yt-dlp and the real ffmpeg, against file:// URLs and an
http server on 127.0.0.1 (tests/helpers/http_audio.py), on both store backends."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepcurator import config as config_mod
from deepcurator.audio import SAMPLE_RATE, decode, ffmpeg_exe
from deepcurator.errors import ConfigError, TooLong
from deepcurator.stages import download
from deepcurator.store import Store, open_store

from tests.helpers.audio import make_audio
from tests.helpers.cli import cli_env, run_cli, write_config
from tests.helpers.http_audio import AudioServer

SECONDS = 35.0  # every good item
LONG_SECONDS = 45.0  # longer than MAX_S
MAX_S = 40.0


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Source files made by ffmpeg: two good codecs, a too-long one, noise and a cut-off m4a."""
    root = tmp_path_factory.mktemp("media")
    make_audio(root / "src.m4a", SECONDS)
    make_audio(root / "src.ogg", SECONDS, freq=330.0)
    make_audio(root / "long.m4a", LONG_SECONDS)
    (root / "noise.m4a").write_bytes(os.urandom(50_000))
    data = (root / "src.m4a").read_bytes()
    (root / "trunc.m4a").write_bytes(data[: len(data) // 2])  # the mp4 index (moov) is at the end
    return root


def serve_dir(media: Path, dest: Path, files: dict[str, str]) -> Path:
    """A folder holding ``<id>.<ext>`` copies of the media files: ``files`` maps id -> media name."""
    dest.mkdir(parents=True, exist_ok=True)
    for item_id, name in files.items():
        shutil.copyfile(media / name, dest / f"{item_id}{Path(name).suffix}")
    return dest


def with_download(cfg: config_mod.Config, **download_keys: object) -> config_mod.Config:
    data = cfg.to_dict(redact=False)
    data["download"].update(download_keys)
    return config_mod.from_dict(data)


def put_labels(store: Store, ids: list[str]) -> None:
    store.put_bytes("labels.csv", ("youtube_id,label\n" + "".join(f"{i},1\n" for i in ids)).encode())


def failures(store: Store) -> list[dict]:
    if not store.exists("failures/download.jsonl"):
        return []
    return [json.loads(line) for line in store.get_bytes("failures/download.jsonl").decode().splitlines()]


def reasons(store: Store) -> dict[str, str]:
    records = failures(store)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), f"an id is logged twice: {ids}"
    return {r["id"]: r["reason"] for r in records}


def audio_keys(store: Store) -> dict[str, str]:
    return {k[len("audio/"):].rsplit(".", 1)[0]: k for k in store.list("audio/")}


def check_mp3(store: Store, key: str, tmp_path: Path, seconds: float = SECONDS, kbps: int = 128) -> None:
    """``key`` is a whole mp3 of ``seconds`` at about ``kbps``: decoded to the end by ffmpeg."""
    local = tmp_path / "check" / Path(key).name
    store.get_file(key, local)
    probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(local)], capture_output=True, text=True).stderr
    assert "Audio: mp3" in probe, probe
    assert f"{kbps} kb/s" in probe, probe
    y = decode(local)
    assert abs(len(y) / SAMPLE_RATE - seconds) < 0.1
    assert float(abs(y).max()) > 0.1  # not silence


# --- pure parts -------------------------------------------------------------------------------

@pytest.mark.parametrize(("message", "reason"), [
    ("ERROR: [youtube] abc: Private video. Sign in if you've been granted access to this video", "unavailable"),
    ("ERROR: [youtube] abc: Video unavailable. This video has been removed by the uploader", "unavailable"),
    ("ERROR: [youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
     "unavailable"),
    ("ERROR: [youtube] abc: The uploader has not made this video available in your country", "unavailable"),
    ("ERROR: [youtube] abc: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser", "rate_limited"),
    ("ERROR: [youtube] abc: Unable to download API page: HTTP Error 429: Too Many Requests", "rate_limited"),
    ("ERROR: unable to download video data: HTTP Error 403: Forbidden", "network"),
    ("ERROR: [generic] abc: Unable to download webpage: <urlopen error timed out>", "network"),
    ("ERROR: [download] Got error: 100 bytes read, 200 more expected. Giving up after 3 retries", "network"),
    ("ERROR: [download] Got error: 429 bytes read, 429 more expected. Giving up after 3 retries", "network"),
    ("ERROR: unable to download video data: HTTP Error 503: Service Unavailable", "network"),
    ("ERROR: Postprocessing: audio conversion failed: Invalid data found", "ffmpeg"),
    ("ERROR: something nobody has seen before", "other"),
])
def test_classify_by_message(message: str, reason: str) -> None:
    from yt_dlp.utils import DownloadError

    assert download.classify(DownloadError(message)) == reason


def test_classify_by_class() -> None:
    from yt_dlp.networking.exceptions import RequestError, TransportError
    from yt_dlp.utils import PostProcessingError

    assert download.classify(TooLong("3600 s")) == "too_long"
    assert download.classify(PostProcessingError("Conversion failed!")) == "ffmpeg"
    assert download.classify(TransportError("EOF occurred")) == "network"
    assert download.classify(RequestError("file:// URLs are disabled by default")) == "other"


def test_ydl_options_follow_config() -> None:
    cfg = config_mod.from_dict({"download": {
        "sleep_interval_s": 2, "max_sleep_interval_s": 5, "sleep_requests_s": 0.5, "rate_limit": "2M",
        "cookies": "cookies.txt", "timeout_s": 7, "retries": 4}}).download
    opts = download.ydl_options(cfg, "/bin/ffmpeg", "/tmp/x", "abc")
    assert opts["enable_file_urls"] is False
    assert (opts["sleep_interval"], opts["max_sleep_interval"], opts["sleep_interval_requests"]) == (2, 5, 0.5)
    assert opts["ratelimit"] == 2 * 1024 * 1024 and opts["cookiefile"] == "cookies.txt"
    assert (opts["socket_timeout"], opts["retries"], opts["ffmpeg_location"]) == (7, 4, "/bin/ffmpeg")
    file_cfg = config_mod.from_dict({"download": {"url_template": "file:///m/{id}.m4a"}}).download
    assert download.ydl_options(file_cfg, "ffmpeg", "/tmp/x", "abc")["enable_file_urls"] is True
    with pytest.raises(ConfigError, match="rate_limit"):
        download.parse_rate("fast")


@pytest.mark.parametrize("bad", [{"bitrate_kbps": 8}, {"url_template": "http://x/"}, {"workers": 0},
                                 {"rate_limit_backoff_s": -1}])
def test_bad_download_config_is_refused(bad: dict) -> None:
    with pytest.raises(ConfigError, match="download"):
        config_mod.from_dict({"download": bad})


def test_file_urls_refused_for_other_templates(media: Path, tmp_path: Path) -> None:
    """A file:// URL behind a non-file template is refused by yt-dlp (a RequestError), not read."""
    from yt_dlp.networking.exceptions import RequestError

    cfg = config_mod.from_dict({"download": {"url_template": "http://mirror.invalid/{id}"}}).download
    with pytest.raises(RequestError) as info:
        download.fetch(f"file://{media}/src.m4a", "abc", tmp_path, cfg, ffmpeg_exe())
    assert download.classify(info.value) == "other"
    assert not list(tmp_path.iterdir())


# --- the stage, real yt-dlp and ffmpeg ------------------------------------------------------

def test_file_urls(cfg: config_mod.Config, media: Path, tmp_path: Path) -> None:
    src = serve_dir(media, tmp_path / "src", {"good_a": "src.m4a", "good_b": "src.m4a", "noise": "noise.m4a",
                                              "trunc": "trunc.m4a", "long": "long.m4a"})
    cfg = with_download(cfg, url_template=f"file://{src}/{{id}}.m4a", max_duration_s=MAX_S, workers=3)
    store = open_store(cfg)
    put_labels(store, ["good_a", "missing", "noise", "good_b", "trunc", "long"])
    summary = download.run(cfg, store)
    assert reasons(store) == {"missing": "unavailable", "noise": "ffmpeg", "trunc": "ffmpeg", "long": "too_long"}
    assert audio_keys(store) == {"good_a": "audio/good_a.mp3", "good_b": "audio/good_b.mp3"}
    for key in audio_keys(store).values():
        check_mp3(store, key, tmp_path)
    assert summary.done == 2 and sum(summary.failed.values()) == 4
    again = download.run(cfg, store)
    assert (again.done, again.skipped, sum(again.failed.values())) == (0, 6, 0)


@pytest.mark.slow
def test_http_server_failures_and_retry(cfg: config_mod.Config, media: Path, tmp_path: Path) -> None:
    files = {"good_m4a": "src.m4a", "good_ogg": "src.ogg", "noise": "noise.m4a", "trunc": "trunc.m4a",
             "stall_x": "src.m4a", "short_x": "src.m4a", "limited_x": "src.m4a"}
    with AudioServer(serve_dir(media, tmp_path / "www", files), stall_s=20) as srv:
        cfg = with_download(cfg, url_template=srv.url_template, timeout_s=1.5, retries=0, workers=4,
                            rate_limit_backoff_s=0.1, rate_limit_retries=1, bitrate_kbps=96)
        store = open_store(cfg)
        put_labels(store, ["good_m4a", "missing", "noise", "trunc", "stall_x", "short_x", "limited_x", "good_ogg"])
        first = download.run(cfg, store)
        assert reasons(store) == {"missing": "unavailable", "noise": "ffmpeg", "trunc": "ffmpeg",
                                  "stall_x": "network", "short_x": "network", "limited_x": "rate_limited"}
        for item_id in ("good_m4a", "good_ogg"):
            check_mp3(store, f"audio/{item_id}.mp3", tmp_path, kbps=96)
        assert first.done == 2 and first.failed["network"] == 2
        # The server lets limited_x through now: --retry-failed fetches the retryable ids only.
        srv.rate_limited = False
        srv.requests.clear()
        retried = download.run(cfg, store, retry=download.RETRYABLE)
        assert retried.done == 1 and retried.failed == {"network": 2}
        assert not any("missing" in p or "noise" in p or "good_" in p for p in srv.requests)
        check_mp3(store, "audio/limited_x.mp3", tmp_path, kbps=96)
        assert reasons(store) == {"missing": "unavailable", "noise": "ffmpeg", "trunc": "ffmpeg",
                                  "stall_x": "network", "short_x": "network"}


def test_rate_limit_pauses_and_retries(media: Path, tmp_path: Path) -> None:
    with AudioServer(serve_dir(media, tmp_path / "www", {"limited_x": "src.m4a"})) as srv:
        cfg = config_mod.from_dict({"download": {"url_template": srv.url_template, "retries": 0,
                                                 "rate_limit_backoff_s": 0.3, "rate_limit_retries": 0}})
        settings = download.Settings.from_config(cfg)
        assert download.download_one("limited_x", settings, open_store(cfg)).reason == "rate_limited"
        per_try = len(srv.requests)
        srv.requests.clear()
        settings = download.Settings.from_config(with_download(cfg, rate_limit_retries=2))
        started = time.monotonic()
        outcome = download.download_one("limited_x", settings, open_store(cfg))
        assert outcome.reason == "rate_limited" and "429" in outcome.detail
        assert time.monotonic() - started >= 0.3 + 0.6  # paused 0.3 s, then 0.6 s
        assert len(srv.requests) == 3 * per_try


def test_limit_downloads_only_that_many(media: Path, tmp_path: Path) -> None:
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store")},
                                "download": {"url_template": f"file://{media}/{{id}}.m4a"}})
    store = open_store(cfg)
    put_labels(store, ["src", "long", "trunc"])
    assert download.run(cfg, store, limit=1).done == 1
    assert list(store.list("audio/")) == ["audio/src.mp3"] and reasons(store) == {}


def test_keep_source(media: Path, tmp_path: Path) -> None:
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store")},
                                "download": {"url_template": f"file://{media}/{{id}}.ogg", "keep_source": True}})
    store = open_store(cfg)
    put_labels(store, ["src"])
    assert download.run(cfg, store).done == 1
    assert list(store.list("audio/")) == ["audio/src.ogg"]
    assert abs(len(decode(store.local_path("audio/src.ogg"))) / SAMPLE_RATE - SECONDS) < 0.1


def test_invalid_ids_fail_once_for_good_without_a_request(media: Path, tmp_path: Path) -> None:
    """An id labels would never write (a hand-edited labels.csv) is logged as invalid_id before
    any request, and retrying the retryable reasons leaves it alone. For a YouTube template
    an id must be a YouTube video id; for another source, any short id of safe characters."""
    youtube = config_mod.from_dict({"store": {"path": str(tmp_path / "yt")}})
    store = open_store(youtube)
    bad_for_youtube = ["short", "AAAAAAAAAA!", "abc def ghi", "../../etc/p", "AAAAAAAAAAAA", "x" * 65]
    put_labels(store, bad_for_youtube)
    summary = download.run(youtube, store)
    assert summary.failed == {"invalid_id": len(bad_for_youtube)}
    assert reasons(store) == dict.fromkeys(bad_for_youtube, "invalid_id")
    assert "not a YouTube video id" in {r["id"]: r["detail"] for r in failures(store)}["short"]
    again = download.run(youtube, store, retry=download.RETRYABLE)
    assert (again.done, again.skipped, sum(again.failed.values())) == (0, len(bad_for_youtube), 0)

    with AudioServer(serve_dir(media, tmp_path / "www", {"short": "src.m4a"})) as srv:
        mirror = config_mod.from_dict({"store": {"path": str(tmp_path / "mirror")},
                                       "download": {"url_template": srv.url_template}})
        store = open_store(mirror)
        put_labels(store, ["short", "abc def", "a%2Fb"])
        summary = download.run(mirror, store)
        assert summary.done == 1 and reasons(store) == {"abc def": "invalid_id", "a%2Fb": "invalid_id"}
        assert not any("abc" in p or "a%2F" in p for p in srv.requests), srv.requests


def test_readme_lists_every_failure_reason() -> None:
    """The reference's table of download failure reasons matches REASONS and RETRYABLE."""
    readme = (Path(__file__).resolve().parent.parent / "docs" / "REFERENCE.md").read_text()
    section = readme[readme.index("## Downloading"):]
    rows = re.findall(r"^\| `(\w+)` +\|[^|]*\| *(yes|no)\b", section, re.M)
    assert [r for r, _ in rows] == list(download.REASONS)
    assert [r for r, retry in rows if retry == "yes"] == list(download.RETRYABLE)


def test_kill9_then_rerun(cfg: config_mod.Config, media: Path, tmp_path: Path) -> None:
    """SIGKILL mid-run, rerun: each id ends whole in the store or once in the failure log; a
    third run downloads nothing.

    The kill lands at a known point: the server holds every request after the first two ids,
    so once both workers wait on a held id, exactly the first two are stored (a worker asks
    for its next id only after storing its last) and two more are in flight."""
    good = [f"good_{i}" for i in range(6)]
    files = dict.fromkeys(good, "src.m4a") | {"noise": "noise.m4a"}
    ids = [*good[:3], "missing", "noise", *good[3:]]
    with AudioServer(serve_dir(media, tmp_path / "www", files), hold=ids[2:]) as srv:
        cfg = with_download(cfg, url_template=srv.url_template, workers=2, timeout_s=30, retries=0)
        store = open_store(cfg)
        put_labels(store, ids)
        conf = write_config(cfg, tmp_path / "config.yml")
        proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(conf), "download"],
                                cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            both_waiting = srv.wait_held(2, timeout=120)
            assert proc.poll() is None, f"the download ended before the kill ({proc.returncode})"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        assert both_waiting, f"the workers never reached the held ids (held: {srv.held})"
        assert set(srv.held) == {"good_2", "missing"}
        assert set(audio_keys(store)) == {"good_0", "good_1"}
        assert not failures(store)
        srv.release()

        second = run_cli("--config", str(conf), "download", cwd=tmp_path, timeout=300)
        assert second.returncode == 0, second.stderr
        assert "failed 2 (ffmpeg 1, unavailable 1)" in second.stdout
        assert re.search(r"bytes [\d.]+ [KM]B, elapsed [\d.]+ s", second.stdout), second.stdout
        logged = reasons(store)
        stored = audio_keys(store)
        assert logged == {"missing": "unavailable", "noise": "ffmpeg"}
        assert set(stored) == set(good) and not set(stored) & set(logged)
        for key in stored.values():
            check_mp3(store, key, tmp_path)

        srv.requests.clear()
        third = run_cli("--config", str(conf), "download", cwd=tmp_path, timeout=120)
        assert third.returncode == 0 and "done 0" in third.stdout and "skipped 8" in third.stdout
        assert srv.requests == []
        assert audio_keys(store) == stored and reasons(store) == logged


@pytest.mark.slow
def test_kill9_leaves_a_scratch_folder_the_next_start_removes(media: Path, tmp_path: Path) -> None:
    """A download killed in flight leaves its ``deepcurator-dl-<host>-<pid>-*`` folder in the
    temp folder; the next start removes it and the scratch folders of other killed stages of
    this host, and keeps those of live processes, of other hosts and the feature cache."""
    temp = tmp_path / "temp"
    temp.mkdir()
    host = socket.gethostname()
    with AudioServer(serve_dir(media, tmp_path / "www", {"held_1": "src.m4a", "good_1": "src.m4a"}),
                     hold={"held_1"}) as srv:
        cfg = with_download(config_mod.from_dict({"store": {"path": str(tmp_path / "store")}}),
                            url_template=srv.url_template, timeout_s=30, retries=0)
        store = open_store(cfg)
        put_labels(store, ["held_1"])  # the server holds it: the download is in flight until the kill
        conf = write_config(cfg, tmp_path / "config.yml")
        proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(conf), "download"],
                                cwd=tmp_path, env=cli_env(TMPDIR=str(temp)), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            assert srv.wait_held(1, timeout=120) and proc.poll() is None, "the download never reached the server"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        srv.release()
        dead = proc.pid
        killed = list(temp.glob(f"deepcurator-dl-{host}-{dead}-*"))
        assert len(killed) == 1 and killed[0].is_dir(), sorted(temp.iterdir())

        stale = [temp / f"deepcurator-run-{host}-{dead}-abc", temp / f"deepcurator-process-{host}-{dead}-x_1"]
        kept = [temp / f"deepcurator-dl-{host}-{os.getpid()}-live", temp / f"deepcurator-run-elsewhere-{dead}-abc",
                temp / "deepcurator-cache"]
        for folder in stale + kept:
            (folder / "sub").mkdir(parents=True)
            (folder / "sub" / "file").write_bytes(b"x")
        put_labels(store, ["good_1"])
        rerun = run_cli("--config", str(conf), "download", cwd=tmp_path, timeout=120, TMPDIR=str(temp))
        assert rerun.returncode == 0 and "done 1" in rerun.stdout, rerun.stderr
    assert sorted(temp.iterdir()) == sorted(kept)  # the rerun's own folder went at its end

def test_cookies_file_is_used_read_only(media: Path, tmp_path: Path) -> None:
    """The cookies file is passed to yt-dlp as a private copy: parallel downloads never write it."""
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tFALSE\t0\tsid\tabc\n")
    before = cookies.read_bytes()
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store")},
                                "download": {"url_template": f"file://{media}/{{id}}.m4a", "cookies": str(cookies)}})
    store = open_store(cfg)
    put_labels(store, ["src"])
    assert download.run(cfg, store).done == 1
    assert cookies.read_bytes() == before
    missing = with_download(cfg, cookies=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="cookies"):
        download.run(missing, store)


def test_runs_on_a_dask_cluster(media: Path, tmp_path: Path) -> None:
    """With executor.dask_scheduler set, the same stage runs its downloads on Dask workers (here
    in this process, so the local folder is declared shared; tests/test_cluster.py runs worker
    processes against S3)."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store"), "shared": True},
                                    "executor": {"dask_scheduler": cluster.scheduler_address},
                                    "download": {"url_template": f"file://{media}/{{id}}.m4a"}})
        store = open_store(cfg)
        put_labels(store, ["src", "noise", "missing"])
        summary = download.run(cfg, store)
    assert summary.done == 1 and reasons(store) == {"noise": "ffmpeg", "missing": "unavailable"}
    check_mp3(store, "audio/src.mp3", tmp_path)
