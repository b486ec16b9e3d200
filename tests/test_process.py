"""The process stage on both store backends: features, failure reasons, resuming, the
trainer/server equality of model inputs, and a kill -9 in the middle of a run."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import psutil
import pytest

from deepcurator import audio, features
from deepcurator.config import Config
from deepcurator.layout import feature_key
from deepcurator.parallel import make_executor
from deepcurator.stages.process import process_all, run, track_features
from deepcurator.store import LocalStore, Store, open_store

from tests.helpers.audio import make_audio
from tests.helpers.cli import cli_env, run_cli, write_config
from tests.helpers.holds import held, holding_ffmpeg, wait_until


def load_features(store: Store, track_id: str) -> np.ndarray:
    """A track's stored log-mel, float16 ``(128, F)``, read as the trainer reads it (np.load)."""
    return np.load(io.BytesIO(store.get_bytes(feature_key(track_id))), allow_pickle=False)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Store id → file: two good tracks (one of two slices, one ogg kept in its source
    format), and one each too short, silent and corrupt."""
    d = tmp_path_factory.mktemp("tracks")
    broken = d / "broken.mp3"
    broken.write_bytes(b"ID3" + bytes(range(256)) * 64)
    return {
        "good.mp3": make_audio(d / "good.mp3", 65.0),
        "other.ogg": make_audio(d / "other.ogg", 32.0, sr=48000, channels=1, freq=330.0),
        "short.mp3": make_audio(d / "short.mp3", 10.0),
        "quiet.mp3": make_audio(d / "quiet.mp3", 35.0, silent=True),
        "broken.mp3": broken,
    }


def stock(cfg: Config, tracks: dict[str, Path]) -> None:
    store = open_store(cfg)
    for name, path in tracks.items():
        store.put_file(f"audio/{name}", path)


def failures(cfg: Config) -> dict[str, dict]:
    lines = open_store(cfg).get_bytes("failures/process.jsonl").decode().splitlines()
    return {rec["id"]: rec for rec in map(json.loads, lines)}


def test_stage_stores_features_records_failures_and_resumes(cfg: Config, tracks: dict[str, Path]) -> None:
    stock(cfg, tracks)
    store = open_store(cfg)
    with make_executor(cfg, 2) as executor:  # one pool for the three runs: workers start once
        summary = process_all(store, executor, cfg.process)
        assert (summary.done, summary.skipped) == (2, 0)
        assert dict(summary.failed) == {"too_short": 1, "silent": 1, "undecodable": 1}
        assert sorted(store.list("features/")) == ["features/good.npy", "features/other.npy"]
        good = load_features(store, "good")
        assert good.dtype == np.float16 and good.shape == (128, 1 + int(65.0 * 22050) // 512)
        assert np.isfinite(good).all() and good.min() >= -100.5 and good.max() < 60
        assert load_features(store, "other").shape[1] == 1 + 32 * 22050 // 512

        failed = failures(cfg)
        assert {i: r["reason"] for i, r in failed.items()} == {"short": "too_short", "quiet": "silent",
                                                              "broken": "undecodable"}
        assert "10.0 s of audio" in failed["short"]["detail"]
        assert "digital silence" in failed["quiet"]["detail"]

        again = process_all(store, executor, cfg.process)  # features exist, failures are for good
        assert (again.done, again.skipped, sum(again.failed.values())) == (0, 5, 0)

        store.delete(feature_key("good"))
        retried = process_all(store, executor, cfg.process, retry_all=True)
        assert (retried.done, retried.skipped, sum(retried.failed.values())) == (1, 1, 3)
        assert load_features(store, "good").tobytes() == good.tobytes()


def test_trainer_input_equals_server_input_bit_for_bit(cfg: Config, tracks: dict[str, Path]) -> None:
    """Slice k as the trainer reads it (stored features) and as the server computes it live."""
    open_store(cfg).put_file("audio/good.mp3", tracks["good.mp3"])
    assert run(cfg, open_store(cfg), workers=1).done == 1
    trainer = features.model_input(load_features(open_store(cfg), "good"))
    server = features.model_input(features.logmel(audio.decode(tracks["good.mp3"])))
    assert trainer.shape == server.shape == (2, 128, 1291, 1)
    for k in range(2):
        assert trainer[k].dtype == server[k].dtype == np.float32
        assert trainer[k].tobytes() == server[k].tobytes()


@pytest.mark.slow
def test_kill_9_mid_stage_then_rerun_completes(tmp_path: Path, tracks: dict[str, Path]) -> None:
    """kill -9 of the stage's process group with exactly three tracks done and the fourth in
    flight (held by a stand-in ffmpeg: with one worker, the tracks go in order and a track's
    features are stored before the next is started), then a rerun does the rest."""
    n = 12
    cfg_file = write_config(Config(), tmp_path / "config.yml")
    root = tmp_path / "data"
    store = LocalStore(root)
    for i in range(n):  # ogg: decoded by ffmpeg, which the stand-in can hold (mp3 goes to mpg123)
        store.put_file(f"audio/t{i:02d}.ogg", tracks["other.ogg"])
    expected = track_features(tracks["other.ogg"], Config().process).shape
    ffmpeg, markers = holding_ffmpeg(tmp_path / "bin", hold=["t03"])

    proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(cfg_file), "process",
                             "--workers", "1"],
                            cwd=tmp_path, env=cli_env(DEEPCURATOR_FFMPEG=str(ffmpeg)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: held(markers) or proc.poll() is not None, timeout=120) and held(markers), \
            f"the stage never reached t03 (exit {proc.poll()})"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the stage, its workers and their ffmpeg
        proc.wait()
    done_at_kill = sorted(store.list("features/"))
    assert done_at_kill == [f"features/t{i:02d}.npy" for i in range(3)]
    for key in done_at_kill:  # whole objects only (temp files are not keys)
        assert load_features(store, key[len("features/"):-4]).shape == expected

    rerun = run_cli("--config", str(cfg_file), "process", "--workers", "2", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"done {n - 3}, skipped 3, failed 0" in rerun.stdout
    assert len(list(store.list("features/"))) == n
    assert all(np.load(p).shape == expected for p in (root / "features").glob("t*.npy"))


def test_cli_on_an_empty_store(tmp_path: Path) -> None:
    cfg_file = write_config(Config(), tmp_path / "config.yml")
    shutil.rmtree(tmp_path / "data", ignore_errors=True)
    proc = run_cli("--config", str(cfg_file), "process", "--workers", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "process: done 0, skipped 0, failed 0" in proc.stdout


def test_track_level_reasons_timeout_and_length_cap(tracks: dict[str, Path]) -> None:
    from deepcurator.config import ProcessConfig
    from deepcurator.stages.process import TrackFailure

    with pytest.raises(TrackFailure) as caught:
        track_features(tracks["good.mp3"], ProcessConfig(decode_timeout_s=0.001))
    assert caught.value.reason == "timeout"
    capped = track_features(tracks["good.mp3"], ProcessConfig(max_duration_s=31.0))
    assert capped.shape == (128, 1 + int(31.0 * 22050) // 512) and capped.dtype == np.float16


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """The processes of ``procs`` still running (a zombie has exited: only its reaping is left)."""
    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_workers_and_resource_tracker_exit_when_the_stage_is_killed(tmp_path: Path, tracks: dict[str, Path]) -> None:
    """SIGKILL to the stage's process alone (not its group): its spawn workers and
    multiprocessing's resource tracker go within seconds instead of outliving it.

    The kill lands with two tracks done and both workers busy: a stand-in ffmpeg holds every
    track after the first two (it dies with the worker that started it)."""
    n = 12
    cfg_file = write_config(Config(), tmp_path / "config.yml")
    store = LocalStore(tmp_path / "data")
    for i in range(n):  # ogg: decoded by ffmpeg, which the stand-in can hold
        store.put_file(f"audio/t{i:02d}.ogg", tracks["other.ogg"])
    ffmpeg, markers = holding_ffmpeg(tmp_path / "bin", hold=[f"t{i:02d}" for i in range(2, n)])
    proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(cfg_file), "process",
                             "--workers", "2"],
                            cwd=tmp_path, env=cli_env(DEEPCURATOR_FFMPEG=str(ffmpeg)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        assert wait_until(lambda: len(held(markers)) == 2 or proc.poll() is not None, timeout=120)
        assert len(held(markers)) == 2 and proc.poll() is None, "the stage never got both workers busy"
        assert sorted(store.list("features/")) == ["features/t00.npy", "features/t01.npy"]
        children = psutil.Process(proc.pid).children(recursive=True)
        lines = [" ".join(p.cmdline()) for p in children]
        assert any("resource_tracker" in c for c in lines), lines
        assert sum("multiprocessing.spawn" in c for c in lines) == 2, lines
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: not _running(children), timeout=5, interval=0.05)
        assert not _running(children), [" ".join(p.cmdline()) for p in _running(children)]
        assert len(list(store.list("features/"))) == 2, "the workers carried on without their parent"
    finally:
        proc.kill()
        proc.wait()
        for p in _running(children):  # the leftovers of a failed test, by pid
            p.kill()


def _worker_pid() -> int:
    return os.getpid()


def test_a_worker_started_by_a_thread_that_ended_keeps_working() -> None:
    """Linux's parent-death signal follows the parent *thread*: a worker started by a thread
    that has ended since must not be killed under a live pool."""
    with make_executor(Config(), 1) as executor:
        started: list[int] = []
        thread = threading.Thread(target=lambda: started.append(executor.submit(_worker_pid).result(timeout=60)))
        thread.start()
        thread.join()
        assert started, "the worker never answered"
        assert executor.submit(_worker_pid).result(timeout=60) == started[0]
