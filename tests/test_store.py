"""The store contract, run against both backends: a local folder and a real S3 protocol
server (moto in server mode on loopback)."""

from __future__ import annotations

import os
import pickle
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deepcurator import config
from deepcurator.errors import StoreError
from deepcurator.store import LocalStore, S3Store, Store, open_store

from tests.helpers.s3 import make_s3_config


def test_bytes_roundtrip_exists_delete(store: Store) -> None:
    assert not store.exists("labels.csv")
    store.put_bytes("labels.csv", b"youtube_id,label\n")
    assert store.exists("labels.csv")
    assert store.get_bytes("labels.csv") == b"youtube_id,label\n"
    store.put_bytes("labels.csv", b"replaced")
    assert store.get_bytes("labels.csv") == b"replaced"
    store.delete("labels.csv")
    store.delete("labels.csv")  # deleting a missing key is not an error
    assert not store.exists("labels.csv")
    with pytest.raises(StoreError, match="not in the store"):
        store.get_bytes("labels.csv")


def test_files_roundtrip(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "a.mp3"
    src.write_bytes(os.urandom(300_000))
    store.put_file("audio/abcdefghijk.mp3", src)
    dest = tmp_path / "out" / "copy.mp3"
    store.get_file("audio/abcdefghijk.mp3", dest)
    assert dest.read_bytes() == src.read_bytes()
    with store.open("audio/abcdefghijk.mp3") as fh:
        assert fh.read(10) == src.read_bytes()[:10]
    assert [p.name for p in dest.parent.iterdir()] == ["copy.mp3"]  # no temp file left


def test_list_is_sorted_and_filtered_by_prefix(store: Store) -> None:
    for key in ["features/b.npy", "features/a.npy", "audio/a.mp3", "failures/process.jsonl", "labels.csv"]:
        store.put_bytes(key, b"x")
    assert list(store.list("features/")) == ["features/a.npy", "features/b.npy"]
    assert list(store.list("fa")) == ["failures/process.jsonl"]
    assert list(store.list()) == sorted(["features/b.npy", "features/a.npy", "audio/a.mp3", "failures/process.jsonl",
                                         "labels.csv"])
    assert list(store.list("runs/")) == []


def test_versions_change_when_an_object_is_replaced(store: Store) -> None:
    for key in ["features/a.npy", "features/b.npy", "labels.csv"]:
        store.put_bytes(key, b"first")
    before = store.versions("features/")
    assert sorted(before) == ["features/a.npy", "features/b.npy"]
    time.sleep(0.01)
    store.put_bytes("features/a.npy", b"again")  # same size, new content
    after = store.versions("features/")
    assert after["features/a.npy"] != before["features/a.npy"]
    assert after["features/b.npy"] == before["features/b.npy"]


@pytest.mark.parametrize("cfg", ["local", pytest.param("s3", marks=pytest.mark.slow)], indirect=True)
def test_listing_is_paginated(store: Store) -> None:
    """More keys than one S3 page (1,000) all come back, in order (1,005 puts to the S3
    server take seconds: that case is slow)."""
    keys = [f"features/{i:05d}.npy" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: store.put_bytes(k, b""), keys))
    assert list(store.list("features/")) == keys


def test_failed_write_leaves_no_object(store: Store, tmp_path: Path) -> None:
    with pytest.raises((OSError, StoreError)):
        store.put_file("audio/missing.mp3", tmp_path / "does-not-exist.mp3")
    assert not store.exists("audio/missing.mp3")
    assert list(store.list("audio/")) == []


def test_local_temp_files_are_invisible(tmp_path: Path) -> None:
    """A write killed half-way leaves a temp file that is never listed nor seen as the key."""
    store = LocalStore(tmp_path)
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / ".tmp-abc123").write_bytes(b"half")
    assert list(store.list()) == []
    assert not store.exists("features/abc.npy")


def test_temp_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    """A writer killed by SIGKILL leaves its temp file; the next stage run removes it, and
    never a temp file of a writer still alive."""
    import signal
    import socket
    import subprocess
    import sys

    store = LocalStore(tmp_path)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = socket.gethostname()
    (tmp_path / "audio").mkdir()
    live = tmp_path / "audio" / f".tmp-{host}-{os.getpid()}-live1"
    dead = tmp_path / "audio" / f".tmp-{host}-{writer.pid}-dead1"
    other_host = tmp_path / "audio" / f".tmp-elsewhere-{writer.pid}-far1"
    for path in (live, dead, other_host):
        path.write_bytes(b"half")
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert store.remove_stale_temps() == 1
    assert not dead.exists() and live.exists() and other_host.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_local_objects_get_the_mode_open_would_give(tmp_path: Path, umask: int, mode: int) -> None:
    """Every local write (put_bytes, put_file, get_file) makes a file of mode 0666 less the
    umask, as a plain open() would: a server running as another user can read a model."""
    store = LocalStore(tmp_path / "store")
    src = tmp_path / "src.bin"
    src.write_bytes(b"model")
    old = os.umask(umask)
    try:
        store.put_bytes("runs/r1/metrics.json", b"{}")
        store.put_file("runs/r1/model.keras", src)
        store.get_file("runs/r1/model.keras", tmp_path / "cache" / "model.keras")
        (tmp_path / "plain.bin").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode) == mode
    for path in (tmp_path / "store/runs/r1/metrics.json", tmp_path / "store/runs/r1/model.keras",
                 tmp_path / "cache/model.keras"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert sorted(p.name for p in (tmp_path / "store/runs/r1").iterdir()) == ["metrics.json", "model.keras"]


def test_s3_download_gets_the_mode_open_would_give(s3_endpoint: str, tmp_path: Path) -> None:
    """S3Store.get_file writes through the same atomic helper: 0666 less the umask."""
    store = open_store(make_s3_config(s3_endpoint, tmp_path))
    store.put_bytes("runs/r1/model.keras", b"model")
    old = os.umask(0o022)
    try:
        store.get_file("runs/r1/model.keras", tmp_path / "cache" / "model.keras")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "cache" / "model.keras").stat().st_mode) == 0o644


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a\\b"])
def test_bad_keys_are_refused(store: Store, key: str) -> None:
    with pytest.raises(StoreError):
        store.put_bytes(key, b"x")


def test_store_pickles_for_worker_processes(store: Store) -> None:
    store.put_bytes("x", b"1")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get_bytes("x") == b"1"


def test_large_file_uses_multipart(s3_endpoint: str, tmp_path: Path) -> None:
    cfg = make_s3_config(s3_endpoint, tmp_path)
    cfg.s3.multipart_threshold_mb = 5
    store = open_store(cfg)
    assert isinstance(store, S3Store)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    store.put_file("audio/big.mp3", big)
    head = store.client.head_object(Bucket=cfg.s3.bucket, Key="deepcurator/audio/big.mp3")
    assert head["ETag"].strip('"').endswith("-3")  # three parts of 5 MB
    out = tmp_path / "back.bin"
    store.get_file("audio/big.mp3", out)
    assert out.read_bytes() == big.read_bytes()


def test_prefix_keeps_keys_under_it(s3_endpoint: str, tmp_path: Path) -> None:
    cfg = make_s3_config(s3_endpoint, tmp_path)
    store = open_store(cfg)
    store.put_bytes("labels.csv", b"x")
    raw = store.client.list_objects_v2(Bucket=cfg.s3.bucket)["Contents"]
    assert [o["Key"] for o in raw] == ["deepcurator/labels.csv"]
    assert list(store.list()) == ["labels.csv"]


def test_errors_never_show_credentials(tmp_path: Path) -> None:
    cfg = config.from_dict({"s3": {"bucket": "b", "endpoint_url": "http://127.0.0.1:9", "region": "us-east-1",
                                   "access_key": "AKIDSECRETLOOKING", "secret": "VERY/SECRET+KEY"}})
    store = open_store(cfg)
    store.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(StoreError) as err:
        store.get_bytes("labels.csv")
    assert "VERY/SECRET+KEY" not in str(err.value) and "AKIDSECRETLOOKING" not in str(err.value)
    assert "VERY/SECRET+KEY" not in repr(store)


def test_default_store_is_local(tmp_path: Path) -> None:
    store = open_store(config.from_dict({"store": {"path": str(tmp_path)}}))
    assert isinstance(store, LocalStore)
    store.put_bytes("labels.csv", b"x")
    assert (tmp_path / "labels.csv").read_bytes() == b"x"
