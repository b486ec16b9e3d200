"""The process stage: every ``audio/<id>.<ext>`` in the store becomes ``features/<id>.npy``.

Each track is decoded (:mod:`deepcurator.audio`), turned into its log-mel
(:func:`deepcurator.features.logmel`) and stored as ``np.save`` of the float16 array
``features.quantize(S)``, shape ``(128, F)``. Tracks run in parallel on an Executor (a spawn
process pool, or Dask); each worker uses one core (BLAS and FFT pinned to one thread), and
decodes with its own mpg123 and ffmpeg.

Re-running does no work twice: a track whose features exist is skipped, and so is one that
failed for good before (undecodable, too short, silent) unless ``retry_all``. A failure
is recorded in ``failures/process.jsonl`` and never stops the stage. Features are written
atomically by the store, so a killed stage leaves no partial ``.npy`` behind.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from deepcurator import audio, features, layout, native_stderr
from deepcurator.cluster import HostSlots, holding, host_slots, worker_store
from deepcurator.config import Config, ProcessConfig
from deepcurator.failures import FailureLog
from deepcurator.parallel import default_workers, make_executor
from deepcurator.scratch import scratch_dir
from deepcurator.spec import SPEC, FeatureSpec, SpecMismatch, check_same
from deepcurator.stagerun import Plan, Summary, fmt_hours, fmt_speed, run_plan
from deepcurator.store import Store

logger = logging.getLogger(__name__)

STAGE = "process"
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


def audio_objects(store: Store) -> dict[str, str]:
    """Track id → audio key for every object under ``audio/`` (any extension; the first key
    in order wins if one id is stored under two extensions)."""
    found: dict[str, str] = {}
    for key in store.list(layout.AUDIO_PREFIX):
        name = posixpath.basename(key)
        track_id = name.rsplit(".", 1)[0] if "." in name else name
        if track_id and not name.startswith("."):
            found.setdefault(track_id, key)
    return found


def done_ids(store: Store) -> set[str]:
    """Ids whose features are stored."""
    return {i for i in map(layout.feature_id, store.list(layout.FEATURES_PREFIX)) if i is not None}


_threads_limited = False

# glibc's mallopt parameters (<malloc.h>) and the steady state of its default, dynamic policy
# on 64-bit: blocks up to 32 MiB come from the heap, which keeps up to 64 MiB of freed top.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def _one_thread_per_worker() -> None:
    """Pin BLAS (and OpenMP) pools to one thread in this process: the stage's parallelism
    is one track per worker, and nested thread pools would oversubscribe the cores. Also
    undo a fixed ``MALLOC_TRIM_THRESHOLD_`` (:func:`_reuse_freed_memory`)."""
    global _threads_limited
    if not _threads_limited:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _reuse_freed_memory()
        _threads_limited = True


def _reuse_freed_memory() -> bool:
    """Give glibc back the steady state of its default allocation policy when the environment
    fixed its thresholds (Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``,
    which also freezes the mmap threshold at 128 KiB): then each track's large arrays (the
    decoded samples, the spectrogram) are mapped fresh and page-faulted in, and the stage took
    45 % more CPU per track on Dask workers than in the local pool (bench/RESULTS.md, "Dask").
    True when it was changed; nothing happens on other systems."""
    if not any(name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                    and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX))
    except (OSError, AttributeError):  # not glibc
        return False


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


def process_track(item: tuple[str, str], store: Store, cfg: ProcessConfig,
                  slots: HostSlots | None = None) -> TrackResult:
    """Worker task: fetch ``item = (track id, audio key)``, compute its features and store
    them under ``features/<id>.npy``. Runs in a worker process (on a Dask cluster, holding one
    of its machine's ``slots`` when there are any)."""
    with holding(slots):
        return _process_track(item, store, cfg)


def _process_track(item: tuple[str, str], store: Store, cfg: ProcessConfig) -> TrackResult:
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
    store.put_bytes(layout.feature_key(track_id), buf.getvalue())
    return TrackResult(track_id, S.shape[1], S.shape[1] * features.HOP / audio.SAMPLE_RATE)


def plan(store: Store, failures: FailureLog, retry_all: bool) -> Plan[tuple[str, str]]:
    """The ``(id, audio key)`` items still to process; skipped: features present, or failed
    for good before (unless ``retry_all``)."""
    objects = audio_objects(store)
    done = done_ids(store)
    failed = set() if retry_all else failures.ids(PERMANENT_REASONS) - done
    todo = [(i, k) for i, k in sorted(objects.items()) if i not in done and i not in failed]
    return Plan(todo, {"already processed": len(done & objects.keys()), "failed before": len(failed & objects.keys())})


def claim_spec(store: Store, spec: FeatureSpec = SPEC) -> None:
    """Make sure every feature in ``store`` is of ``spec``: write ``feature_spec.json`` when the
    store has none (features from before the spec file are of version 1, the only one there
    was), refuse in one line when it names another spec."""
    if store.exists(layout.FEATURE_SPEC):
        found = FeatureSpec.from_json(store.get_bytes(layout.FEATURE_SPEC), f"{store.describe()}/{layout.FEATURE_SPEC}")
        try:
            check_same(found, f"the features in {store.describe()}", spec)
        except SpecMismatch as exc:
            raise SpecMismatch(f"{exc}; process into another store, or remove features/ and {layout.FEATURE_SPEC} "
                               "to recompute them all") from None
        return
    store.put_bytes(layout.FEATURE_SPEC, spec.to_json())
    logger.info("feature spec v%d written to %s/%s", spec.version, store.describe(), layout.FEATURE_SPEC)


def _outcome(item: tuple[str, str], result: TrackResult | BaseException) -> tuple[str | None, str]:
    """Failure log reason and detail for a result of :func:`process_track` (None: success)."""
    if isinstance(result, TrackResult):
        return None, ""
    if isinstance(result, TrackFailure):
        return result.reason, result.detail
    return "error", f"{type(result).__name__}: {result}"


def process_all(store: Store, executor: Executor, cfg: ProcessConfig, *, retry_all: bool = False,
                per_host: int = 0) -> Summary:
    """Process every pending track of ``store`` on ``executor``; returns the summary. On a Dask
    cluster at most ``per_host`` tracks run at once per machine (0: as many as its workers'
    threads)."""
    claim_spec(store)
    failures = FailureLog(store, STAGE)
    audio_seconds = 0.0

    def count(_: tuple[str, str], result: TrackResult) -> None:
        nonlocal audio_seconds
        audio_seconds += result.seconds

    todo = plan(store, failures, retry_all)
    task_store = worker_store(executor, store) if todo.todo else store
    summary = run_plan(STAGE, todo, process_track, task_store, cfg, host_slots(executor, STAGE, per_host),
                       executor=executor, outcome=_outcome, item_id=lambda item: item[0], failures=failures,
                       on_done=count)
    summary.extra["audio"] = fmt_hours(audio_seconds)
    if summary.done:
        summary.extra["speed"] = fmt_speed(audio_seconds, summary.elapsed_s)
    return summary


def run(cfg: Config, store: Store, *, workers: int | None = None, retry_all: bool = False) -> Summary:
    """The stage: process every stored track not yet processed, one per core (``workers``,
    default ``process.workers``; 0 = every core), on a local process pool or Dask (where a
    ``workers`` above 0 caps the tracks at once per machine)."""
    n = workers if workers is not None else cfg.process.workers
    with make_executor(cfg, n if n > 0 else default_workers(), kind="process", store=store) as executor:
        return process_all(store, executor, cfg.process, retry_all=retry_all, per_host=n)
