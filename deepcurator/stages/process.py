"""The process stage: every ``audio/<id>.<ext>`` in the store becomes ``features/<id>.npy``.

Each track is decoded (:mod:`deepcurator.audio`), turned into its log-mel
(:func:`deepcurator.features.logmel`) and stored as ``np.save`` of the float16 array
``features.quantize(S)``, shape ``(128, F)``. Tracks run in parallel on an Executor (a spawn
process pool, or Dask); each worker uses one core (BLAS and FFT pinned to one thread).

Re-running does no work twice: a track whose features exist is skipped, and so is one that
failed for good before (undecodable, too short, silent) unless ``retry_all``. A failure
is recorded in ``failures/process.jsonl`` and never stops the stage. Features are written
atomically by the store, so a killed stage leaves no partial ``.npy`` behind.
"""

from __future__ import annotations

import io
import os
import posixpath
import time
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from deepcurator import audio, features, native_stderr
from deepcurator.config import Config, ProcessConfig
from deepcurator.failures import FailureLog
from deepcurator.parallel import Summary, default_workers, make_executor, run_items
from deepcurator.scratch import scratch_dir
from deepcurator.store import Store, open_store

STAGE = "process"
AUDIO_PREFIX = "audio/"
FEATURES_PREFIX = "features/"
# Reasons that will not change on a rerun of the same file; "timeout" and "error" are retried.
PERMANENT_REASONS = ("undecodable", "too_short", "silent")


class TrackFailure(Exception):
    """A track that yields no features, with the reason recorded in the failure log."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TrackResult:
    """What processing one track produced."""

    track_id: str
    frames: int
    seconds: float  # of audio decoded


def feature_key(track_id: str) -> str:
    """Store key of a track's features."""
    return f"{FEATURES_PREFIX}{track_id}.npy"


def audio_objects(store: Store) -> dict[str, str]:
    """Track id → audio key for every object under ``audio/`` (any extension; the first key
    in order wins if one id is stored under two extensions)."""
    found: dict[str, str] = {}
    for key in store.list(AUDIO_PREFIX):
        name = posixpath.basename(key)
        track_id = name.rsplit(".", 1)[0] if "." in name else name
        if track_id and not name.startswith("."):
            found.setdefault(track_id, key)
    return found


def done_ids(store: Store) -> set[str]:
    """Ids whose features are stored."""
    return {posixpath.basename(k)[: -len(".npy")] for k in store.list(FEATURES_PREFIX) if k.endswith(".npy")}


_threads_limited = False


def _one_thread_per_worker() -> None:
    """Pin BLAS (and OpenMP) pools to one thread in this process: the stage's parallelism
    is one track per worker, and nested thread pools would oversubscribe the cores."""
    global _threads_limited
    if not _threads_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _threads_limited = True


def track_features(path: str | os.PathLike[str], cfg: ProcessConfig) -> np.ndarray:
    """Decode one audio file and return its stored form: float16 log-mel ``(128, F)``.

    Raises :class:`TrackFailure` with reason ``undecodable``, ``timeout``, ``too_short``
    (under one 30-s slice) or ``silent`` (no sample louder than ``cfg.silence_dbfs``).
    """
    max_duration = cfg.max_duration_s if cfg.max_duration_s > 0 else None
    try:
        y = audio.decode(path, timeout=cfg.decode_timeout_s, max_duration=max_duration)
    except audio.DecodeTimeoutError as exc:
        raise TrackFailure("timeout", str(exc)) from None
    except audio.DecodeError as exc:
        raise TrackFailure("undecodable", str(exc)) from None
    seconds = y.size / audio.SAMPLE_RATE
    if features.n_frames(y.size) < features.SLICE_FRAMES:
        raise TrackFailure("too_short", f"{seconds:.1f} s of audio; one slice needs {features.SLICE_SECONDS:.1f} s")
    peak = float(np.max(np.abs(y)))
    if peak <= 10.0 ** (cfg.silence_dbfs / 20.0):
        level = f"loudest sample {20 * np.log10(peak):.1f} dBFS" if peak > 0 else "digital silence"
        raise TrackFailure("silent", f"{level} over {seconds:.1f} s (threshold {cfg.silence_dbfs:g} dBFS)")
    return features.quantize(features.logmel(y))


def process_track(item: tuple[str, str], store: Store, cfg: ProcessConfig) -> TrackResult:
    """Worker task: fetch ``item = (track id, audio key)``, compute its features and store
    them under ``features/<id>.npy``. Runs in a worker process."""
    _one_thread_per_worker()
    native_stderr.install()  # the mp3 decoder's per-frame notes go to a DEBUG logger
    track_id, key = item
    local = store.local_path(key)
    if local is not None:
        S = track_features(local, cfg)
    else:
        with scratch_dir("process") as tmp:
            path = os.path.join(tmp, posixpath.basename(key))
            store.get_file(key, path)
            S = track_features(path, cfg)
    buf = io.BytesIO()
    np.save(buf, S, allow_pickle=False)
    store.put_bytes(feature_key(track_id), buf.getvalue())
    return TrackResult(track_id, S.shape[1], S.shape[1] * features.HOP / audio.SAMPLE_RATE)


def plan(store: Store, failures: FailureLog, retry_all: bool) -> tuple[list[tuple[str, str]], int]:
    """The ``(id, audio key)`` items still to process, and how many are skipped (features
    present, or failed for good before unless ``retry_all``)."""
    objects = audio_objects(store)
    skip = done_ids(store)
    if not retry_all:
        skip |= failures.ids(PERMANENT_REASONS)
    todo = [(i, k) for i, k in sorted(objects.items()) if i not in skip]
    return todo, len(objects) - len(todo)


def process_all(store: Store, executor: Executor, cfg: ProcessConfig, *, retry_all: bool = False,
                flush_every_s: float = 10.0) -> Summary:
    """Run the stage over every pending track on ``executor``; returns the summary."""
    summary = Summary(STAGE)
    failures = FailureLog(store, STAGE)
    todo, summary.skipped = plan(store, failures, retry_all)
    audio_seconds = 0.0
    last_flush = time.monotonic()
    for (track_id, _), result in run_items(executor, process_track, todo, store, cfg, desc=STAGE):
        if isinstance(result, TrackResult):
            summary.done += 1
            audio_seconds += result.seconds
            failures.clear(track_id)
        else:
            reason, detail = _describe(result)
            summary.failed[reason] += 1
            failures.add(track_id, reason, detail)
        if time.monotonic() - last_flush > flush_every_s:
            failures.flush()
            last_flush = time.monotonic()
    failures.flush()
    elapsed = time.monotonic() - summary.started
    summary.extra["audio"] = f"{audio_seconds / 3600:.2f} h"
    if summary.done:
        summary.extra["speed"] = f"{audio_seconds / max(elapsed, 1e-9):.0f}x real time"
    return summary


def _describe(exc: BaseException) -> tuple[str, str]:
    """Failure log reason and detail for an exception raised by :func:`process_track`."""
    if isinstance(exc, TrackFailure):
        return exc.reason, exc.detail
    return "error", f"{type(exc).__name__}: {exc}"


def run_stage(cfg: Config, *, workers: int | None = None, retry_all: bool = False) -> Summary:
    """The whole stage as the CLI runs it: open the store, start the executor, process."""
    store = open_store(cfg)
    n = workers if workers is not None else cfg.process.workers
    with make_executor(cfg, n if n > 0 else default_workers(), kind="process") as executor:
        return process_all(store, executor, cfg.process, retry_all=retry_all)


def load_features(store: Store, track_id: str) -> np.ndarray:
    """A track's stored log-mel, float16 ``(128, F)`` (what the trainer reads)."""
    return np.load(io.BytesIO(store.get_bytes(feature_key(track_id))), allow_pickle=False)
