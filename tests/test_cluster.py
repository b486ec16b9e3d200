"""The per-track stages on a real Dask cluster: separate worker processes (``LocalCluster`` with
``processes=True``, or ``dask scheduler`` / ``dask worker`` subprocesses) against the S3 store
on the S3 protocol server; the faults (a worker killed, the scheduler lost, the S3 server
restarting) and what makes a cluster run safe (no local store, no credentials in tasks, each
worker's own ffmpeg, a 429 pausing every worker, per-machine slots).

The workers find ffmpeg through ``DEEPCURATOR_FFMPEG``: a stand-in (tests/helpers/holds.py)
that runs the real one unless a test has rewritten it to hold a track, so a kill lands at a
known point.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from deepcurator import config as config_mod
from deepcurator.audio import ffmpeg_exe
from deepcurator.errors import ClusterError, ConfigError
from deepcurator.stages import download, process
from deepcurator.store import S3Store, Store, open_store

from tests.helpers.audio import make_audio
from tests.helpers.cli import REPO, cli_env, write_config
from tests.helpers.holds import held, holding_ffmpeg, release, wait_until
from tests.helpers.http_audio import AudioServer
from tests.helpers.s3 import make_s3_config

distributed = pytest.importorskip("distributed")

ACCESS_KEY = "AKIACLIENTONLY0000000"
SECRET = f"client-only-secret-{uuid.uuid4().hex}"  # the workers never have it: they use AWS_* from the environment


def with_keys(cfg: config_mod.Config, **sections: dict[str, Any]) -> config_mod.Config:
    data = cfg.to_dict(redact=False)
    for section, values in sections.items():
        data[section].update(values)
    return config_mod.from_dict(data)


def put_labels(store: Store, ids: list[str]) -> None:
    store.put_bytes("labels.csv", ("youtube_id,label\n" + "".join(f"{i},1\n" for i in ids)).encode())


def reasons(store: Store, stage: str) -> dict[str, str]:
    import json

    key = f"failures/{stage}.jsonl"
    if not store.exists(key):
        return {}
    return {r["id"]: r["reason"] for r in map(json.loads, store.get_bytes(key).decode().splitlines())}


def features(store: Store, track_id: str) -> np.ndarray:
    return np.load(io.BytesIO(store.get_bytes(f"features/{track_id}.npy")), allow_pickle=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sources: two m4a long enough for a slice, a short one for download-only tests, noise,
    and an ogg (decoded by ffmpeg, so the stand-in can hold it)."""
    root = tmp_path_factory.mktemp("cluster-media")
    make_audio(root / "long_a.m4a", 31.0)
    make_audio(root / "long_b.m4a", 33.0, freq=330.0)
    make_audio(root / "short.m4a", 4.0)
    make_audio(root / "track.ogg", 32.0, sr=48000, channels=1, freq=330.0)
    (root / "noise.m4a").write_bytes(os.urandom(20_000))
    return root


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The workers' ffmpeg: the stand-in, holding nothing until a test rewrites it."""
    return holding_ffmpeg(tmp_path_factory.mktemp("worker-ffmpeg"), hold=[])


@pytest.fixture(scope="module")
def cluster(s3_endpoint: str, standin: tuple[Path, Path]) -> Iterator[Any]:
    """Two worker processes of one thread each; the scheduler in this process. The workers get
    S3 credentials from the environment (AWS_*, set by ``s3_endpoint``) and their own ffmpeg."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", env={"DEEPCURATOR_FFMPEG": str(standin[0])}) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        where = client.run(lambda: __import__("deepcurator").__file__)
        assert all(Path(f).is_relative_to(REPO) for f in where.values()), where  # this checkout's code
        yield cluster


def cluster_cfg(endpoint: str, tmp_path: Path, address: str, **sections: dict[str, Any]) -> config_mod.Config:
    """A fresh bucket, the scheduler ``address``, and S3 keys that only the client has."""
    return with_keys(make_s3_config(endpoint, tmp_path), s3={"access_key": ACCESS_KEY, "secret": SECRET},
                     executor={"dask_scheduler": address, "connect_timeout_s": 60}, **sections)


def worker_pids(address: str) -> set[int]:
    with distributed.Client(address, set_as_default=False) as client:
        return set(client.run(os.getpid).values())


def wait_for_two_workers(address: str) -> None:
    with distributed.Client(address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=120)


# --- safe by construction, without a cluster --------------------------------------------------

def test_a_local_store_with_a_scheduler_is_refused_in_one_line(tmp_path: Path) -> None:
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store")},
                                "executor": {"dask_scheduler": "tcp://127.0.0.1:9", "connect_timeout_s": 2}})
    store = open_store(cfg)
    put_labels(store, ["abc"])
    for run in (lambda: download.run(cfg, store), lambda: process.run(cfg, store)):
        with pytest.raises(ConfigError) as refused:
            run()
        assert "\n" not in str(refused.value)
        assert "local folder" in str(refused.value) and "store.shared: true" in str(refused.value)
    # Declared shared (a network mount): accepted, and then the missing scheduler is one line.
    shared = with_keys(cfg, store={"shared": True})
    with pytest.raises(ClusterError, match=r"^cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9 within 2 s") \
            as lost:
        download.run(shared, store)
    assert "\n" not in str(lost.value)
    assert not list(store.list("audio/"))


# --- on two worker processes with S3 ----------------------------------------------------------

def test_download_and_process_on_worker_processes_match_a_local_run(
        cluster: Any, s3_endpoint: str, media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same keys, same mp3 bytes, equal features, same failures as a run on this machine; the
    client cannot run ffmpeg (each worker uses its own), and no message the client or the
    scheduler sends holds the client's S3 secret (the workers use their own credentials)."""
    template = f"file://{media}/{{id}}.m4a"
    ids = ["long_a", "noise", "long_b", "missing"]
    local = with_keys(make_s3_config(s3_endpoint, tmp_path), download={"url_template": template})
    remote = cluster_cfg(s3_endpoint, tmp_path, cluster.scheduler_address, download={"url_template": template})
    for cfg in (local, remote):
        put_labels(open_store(cfg), ids)
    local_store, remote_store = open_store(local), open_store(remote)
    assert download.run(local, local_store).done == 2
    assert process.run(local, local_store, workers=1).done == 2

    # The client's own ffmpeg is gone: only the workers' can do the work.
    monkeypatch.setenv("DEEPCURATOR_FFMPEG", str(tmp_path / "no-ffmpeg-here"))
    ffmpeg_exe.cache_clear()
    sent: list[bytes] = []
    import distributed.comm.tcp as tcp

    to_frames = tcp.to_frames

    async def recording(*args: Any, **kwargs: Any) -> Any:
        frames = await to_frames(*args, **kwargs)
        sent.extend(bytes(f) for f in frames)
        return frames

    monkeypatch.setattr(tcp, "to_frames", recording)
    try:
        fetched = download.run(remote, remote_store)
        processed = process.run(remote, remote_store)
    finally:
        monkeypatch.undo()
        ffmpeg_exe.cache_clear()
    assert (fetched.done, processed.done) == (2, 2)

    keys = sorted(k for k in local_store.list() if not k.startswith("failures/"))
    assert keys == sorted(k for k in remote_store.list() if not k.startswith("failures/"))
    assert keys == ["audio/long_a.mp3", "audio/long_b.mp3", "feature_spec.json", "features/long_a.npy",
                    "features/long_b.npy", "labels.csv"]
    for key in keys:
        if key.startswith("features/"):
            track = key[len("features/"):-4]
            assert np.array_equal(features(local_store, track), features(remote_store, track))
        else:
            assert local_store.get_bytes(key) == remote_store.get_bytes(key), key
    assert reasons(local_store, "download") == reasons(remote_store, "download") == {
        "noise": "ffmpeg", "missing": "unavailable"}

    # The secret would show in the frames if a task carried it (pickle keeps strings whole).
    from distributed.protocol.pickle import dumps

    assert SECRET.encode() in dumps(remote_store) and SECRET.encode() not in dumps(remote_store.without_credentials())
    assert len(sent) > 20
    assert not [f for f in sent if SECRET.encode() in f], "the client's S3 secret went over the wire"
    assert not [f for f in sent if ACCESS_KEY.encode() in f], "the client's S3 access key went over the wire"


def test_a_worker_that_cannot_run_its_ffmpeg_is_named_before_any_work(
        cluster: Any, s3_endpoint: str, media: Path, tmp_path: Path) -> None:
    cfg = cluster_cfg(s3_endpoint, tmp_path, cluster.scheduler_address,
                      download={"url_template": f"file://{media}/{{id}}.m4a", "ffmpeg": "/nonexistent/ffmpeg"})
    store = open_store(cfg)
    put_labels(store, ["short"])
    with pytest.raises(ClusterError, match=r"^Dask worker tcp://127\.0\.0\.1:\d+ cannot take part: on .+, "
                                           r"ffmpeg /nonexistent/ffmpeg does not run") as refused:
        download.run(cfg, store)
    assert "\n" not in str(refused.value)
    assert list(store.list()) == ["labels.csv"]  # no audio, no probe left behind


def test_a_429_seen_by_one_worker_pauses_the_other(cluster: Any, s3_endpoint: str, media: Path,
                                                   tmp_path: Path) -> None:
    """Worker A gets a 429 while worker B is in the middle of another id (the server holds B's
    first request until A's is answered and A's pause is on the scheduler, so the two are in
    flight at once, in two processes of one thread each); B's next id must wait out A's pause
    before its first request."""
    backoff = 4.0
    www = tmp_path / "www"
    www.mkdir()
    ids = ["limited_a", *(f"b_{i}" for i in range(5))]
    for i in ids:
        (www / f"{i}.m4a").write_bytes((media / "short.m4a").read_bytes())
    lock = threading.Lock()
    limited_waiting, other_in, answered = threading.Event(), threading.Event(), threading.Event()
    state: dict[str, Any] = {}

    def order(item_id: str) -> None:
        with lock:
            first_limited = item_id.startswith("limited_") and "t0" not in state and not limited_waiting.is_set()
            first_other = (not item_id.startswith("limited_") and limited_waiting.is_set()
                           and not other_in.is_set())
            if first_limited:
                limited_waiting.set()
            if first_other:
                state["held"] = item_id
                other_in.set()
        if first_limited:  # hold A's request until B's is in flight, then answer 429 (after this returns)
            assert other_in.wait(120), "no second worker came"
            state["t0"] = time.monotonic()
            answered.set()
        elif first_other:  # B goes on once A's pause is on the scheduler (not before: a race, not the point)
            answered.wait(120)
            wait_until(lambda: any(name.startswith("deepcurator-download-pause-") and record["value"] > 0
                                   for name, record in list(pauses.items())), timeout=120)

    pauses = cluster.scheduler.extensions["variables"].variables  # the scheduler runs in this process
    with AudioServer(www) as srv:
        srv.limited_answers = 1
        srv.on_request = order
        cfg = cluster_cfg(s3_endpoint, tmp_path, cluster.scheduler_address,
                          download={"url_template": srv.url_template, "retries": 0, "workers": 2,
                                    "rate_limit_backoff_s": backoff, "rate_limit_retries": 2})
        store = open_store(cfg)
        put_labels(store, ids)
        summary = download.run(cfg, store)
    assert summary.done == len(ids) and not reasons(store, "download")
    t0, b_held = state["t0"], state["held"]
    later = [(t - t0, i) for t, i in srv.log if t > t0 and i not in ("limited_a", b_held)]
    assert later, "the other worker had nothing left to do"
    assert min(t for t, _ in later) >= backoff - 0.2, f"a download started during the pause: {sorted(later)}"


def test_download_workers_caps_downloads_per_machine(cluster: Any, s3_endpoint: str, media: Path,
                                                    tmp_path: Path) -> None:
    """``download.workers: 1`` on two worker processes of this one machine: one download at a time."""
    www = tmp_path / "www"
    www.mkdir()
    ids = [f"c_{i}" for i in range(4)]
    for i in ids:
        (www / f"{i}.m4a").write_bytes((media / "short.m4a").read_bytes())
    with AudioServer(www, latency_s=0.3) as srv:
        cfg = cluster_cfg(s3_endpoint, tmp_path, cluster.scheduler_address,
                          download={"url_template": srv.url_template, "workers": 1})
        store = open_store(cfg)
        put_labels(store, ids)
        assert download.run(cfg, store).done == len(ids)
    assert srv.max_in_flight == 1


# --- faults -----------------------------------------------------------------------------------

def stock_tracks(store: Store, media: Path, n: int) -> None:
    for i in range(n):
        store.put_file(f"audio/t{i:02d}.ogg", media / "track.ogg")


def bucket_keys(cfg: config_mod.Config) -> list[str]:
    """Every object of the bucket, and the multipart uploads still open, straight from S3."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=cfg.s3.endpoint_url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=cfg.s3.bucket).get("Contents", [])]
    uploads = s3.list_multipart_uploads(Bucket=cfg.s3.bucket).get("Uploads", [])
    return keys + [f"open upload {u['Key']}" for u in uploads]


def in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test, which fails on it
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.slow
def test_a_worker_killed_mid_stage_loses_nothing(cluster: Any, standin: tuple[Path, Path], s3_endpoint: str,
                                                 media: Path, tmp_path: Path) -> None:
    """SIGKILL to the worker process decoding t03 (held there by the stand-in ffmpeg, the
    first time only): Dask runs its tasks again elsewhere, the stage finishes every track,
    the bucket holds whole objects only, and a rerun has nothing left to do."""
    n = 8
    exe, markers = holding_ffmpeg(standin[0].parent, hold=["t03"], once=True)
    cfg = cluster_cfg(s3_endpoint, tmp_path, cluster.scheduler_address)
    store = open_store(cfg)
    stock_tracks(store, media, n)
    expected = process.track_features(media / "track.ogg", cfg.process)
    pids = worker_pids(cluster.scheduler_address)
    try:
        thread, out = in_thread(lambda: process.run(cfg, store))
        assert wait_until(lambda: "t03" in held(markers) or not thread.is_alive(), timeout=120)
        assert "t03" in held(markers), f"the stage never reached t03: {out}"
        worker = psutil.Process(int((markers / "t03").read_text())).parent()
        assert worker is not None and worker.pid in pids
        assert not store.exists("features/t03.npy")
        os.kill(worker.pid, signal.SIGKILL)
        thread.join(timeout=300)
        assert not thread.is_alive(), "the stage did not finish after the kill"
    finally:
        holding_ffmpeg(exe.parent, hold=[])
        for marker in markers.iterdir():
            marker.unlink()
    assert "error" not in out, out
    summary = out["result"]
    assert (summary.done, sum(summary.failed.values())) == (n, 0), summary.line()
    for i in range(n):
        assert np.array_equal(features(store, f"t{i:02d}"), expected)
    assert sorted(bucket_keys(cfg)) == sorted(
        [f"deepcurator/audio/t{i:02d}.ogg" for i in range(n)] + [f"deepcurator/features/t{i:02d}.npy" for i in range(n)]
        + ["deepcurator/feature_spec.json"])
    wait_for_two_workers(cluster.scheduler_address)  # the nanny restarted the killed one
    again = process.run(cfg, store)
    assert (again.done, again.skipped) == (0, n)


@pytest.mark.slow
def test_the_s3_server_restarting_mid_stage_is_waited_out_or_recorded(
        cluster: Any, standin: tuple[Path, Path], media: Path, tmp_path: Path) -> None:
    """The S3 server stops while t01 is being decoded and comes back 1.5 s later on the same
    port: botocore retries the calls (or, past its attempts, the track is recorded as failed
    with reason error); the stage never crashes, and a rerun completes."""
    from moto.server import ThreadedMotoServer

    n = 4
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    exe, markers = holding_ffmpeg(standin[0].parent, hold=["t01"], until_released=True)
    try:
        cfg = cluster_cfg(f"http://127.0.0.1:{port}", tmp_path, cluster.scheduler_address)
        store = open_store(cfg)
        stock_tracks(store, media, n)
        thread, out = in_thread(lambda: process.run(cfg, store))
        assert wait_until(lambda: "t01" in held(markers) or not thread.is_alive(), timeout=120)
        assert "t01" in held(markers), f"the stage never reached t01: {out}"
        server.stop()
        release(markers, "t01")
        time.sleep(1.5)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert "error" not in out, f"the stage crashed: {out['error']!r}"
        summary = out["result"]
        logged = reasons(store, "process")
        assert summary.done + sum(summary.failed.values()) == n and set(logged.values()) <= {"error"}
        rerun = process.run(cfg, store)
        assert (rerun.done, rerun.skipped) == (len(logged), n - len(logged))
        assert sorted(store.list("features/")) == [f"features/t{i:02d}.npy" for i in range(n)]
        assert reasons(store, "process") == {}
    finally:
        holding_ffmpeg(exe.parent, hold=[])
        for marker in markers.iterdir():
            marker.unlink()
        server.stop()


@pytest.mark.slow
def test_the_scheduler_lost_mid_stage_is_one_line_and_a_rerun_resumes(
        s3_endpoint: str, media: Path, tmp_path: Path) -> None:
    """Real ``dask scheduler`` and ``dask worker`` processes; the scheduler is killed (SIGKILL)
    while the worker decodes t02 (held by the stand-in): the command ends with one line and
    status 2, nothing of t02 is in the store; with a new scheduler and worker a rerun finishes."""
    n = 5
    exe, markers = holding_ffmpeg(tmp_path / "bin", hold=["t02"], once=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    cfg = cluster_cfg(s3_endpoint, tmp_path, address)
    store = open_store(cfg)
    stock_tracks(store, media, n)
    conf = write_config(cfg, tmp_path / "config.yml")
    env = cli_env(DEEPCURATOR_FFMPEG=str(exe))
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    def start_cluster() -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        scheduler = start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")
        worker = start("worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard")
        return scheduler, worker

    try:
        scheduler, worker = start_cluster()
        stage = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(conf), "process"],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(stage)  # type: ignore[arg-type]
        assert wait_until(lambda: "t02" in held(markers) or stage.poll() is not None, timeout=180), "no progress"
        assert "t02" in held(markers), stage.communicate()
        scheduler.send_signal(signal.SIGKILL)
        stdout, stderr = stage.communicate(timeout=120)
        assert stage.returncode == 2, (stdout, stderr)
        said = [line for line in stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
        assert said == [
            f"deepcurator process: error: lost the Dask scheduler at {address} in the middle of the stage; what was "
            "finished is in the store: start the scheduler and rerun to resume"], stderr
        done = sorted(store.list("features/"))
        assert "features/t02.npy" not in done and done == [f"features/t{i:02d}.npy" for i in range(len(done))]
        assert reasons(store, "process") == {}  # the cancelled tracks are not failures

        worker.kill()  # its held ffmpeg dies with it
        worker.wait(timeout=30)
        scheduler.wait(timeout=30)
        start_cluster()
        rerun = subprocess.run([sys.executable, "-m", "deepcurator", "--config", str(conf), "process"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert f"process: done {n - len(done)}, skipped {len(done)}, failed 0" in rerun.stdout
        assert len(list(store.list("features/"))) == n
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)


def test_tasks_carry_no_credentials() -> None:
    """What a task carries: the S3 store without keys (the worker's credential chain applies)."""
    cfg = config_mod.from_dict({"s3": {"bucket": "b", "region": "eu-west-1", "prefix": "p", "access_key": ACCESS_KEY,
                                       "secret": SECRET, "endpoint_url": "http://s3.local:9000"}})
    store = open_store(cfg)
    assert isinstance(store, S3Store)
    shipped = store.without_credentials()
    assert isinstance(shipped, S3Store)
    assert (shipped.cfg.access_key, shipped.cfg.secret) == (None, None)
    assert (shipped.cfg.bucket, shipped.prefix, shipped.cfg.region, shipped.cfg.endpoint_url) == (
        "b", "p/", "eu-west-1", "http://s3.local:9000")
    assert shipped.describe() == store.describe()
    settings = download.Settings.from_config(cfg)
    from distributed.protocol.pickle import dumps

    assert ffmpeg_exe().encode() not in dumps(settings)  # each worker resolves its own


def test_process_workers_undo_a_fixed_malloc_trim_threshold() -> None:
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which cost the process
    stage 45 % more CPU per track (bench/RESULTS.md, "Dask"); its workers set glibc back to
    its default steady state, and leave a process alone whose environment fixed nothing."""
    code = "from deepcurator.stages import process; print(process._reuse_freed_memory())"
    env = cli_env()
    env.pop("MALLOC_TRIM_THRESHOLD_", None)  # the in-process cluster's nanny may have set it here
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    dask_like = subprocess.run([sys.executable, "-c", code], env={**env, "MALLOC_TRIM_THRESHOLD_": "65536"},
                               capture_output=True, text=True, check=True)
    assert (plain.stdout.strip(), dask_like.stdout.strip()) == ("False", "True")
