"""Downloading one labelled id's audio with yt-dlp (Python API) and ffmpeg, and the stage loop.

- :func:`ydl_options` maps the ``download`` config section to yt-dlp's options (pure);
- :func:`classify` maps a yt-dlp exception to a failure reason (pure);
- :func:`fetch` downloads one URL into a folder and returns the audio file;
- :func:`download_one` fetches one id into a temp folder and puts it in the store
  atomically, pausing every worker after a rate-limit answer (of the process, or on a Dask
  cluster of the whole cluster: :class:`~deepcurator.cluster.SharedPause`);
- :func:`run_stage` skips what is done, runs the rest on an executor and keeps the failure
  log (``failures/download.jsonl``) and the end-of-stage summary.

Failure reasons: ``unavailable`` (private, removed, geo-blocked, age-gated, 404),
``rate_limited`` (429, "confirm you're not a bot"), ``network`` (timeouts, resets, 403,
short transfers), ``ffmpeg`` (not audio, truncated, conversion failed), ``too_long``
(longer than ``download.max_duration_s``), ``invalid_id`` (not an id the source can have:
see :func:`id_problem`; found before any request), ``other``.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcurator import layout, shipped
from deepcurator.cluster import HostSlots, SharedPause, holding, host_slots, shared_pause, worker_store
from deepcurator.config import Config, DownloadConfig
from deepcurator.errors import ConfigError, InputError, TooLong
from deepcurator.failures import FailureLog
from deepcurator.parallel import make_executor
from deepcurator.scratch import scratch_dir
from deepcurator.stagerun import Plan, Summary, fmt_bytes, run_plan
from deepcurator.store import Store
from deepcurator.youtube import is_video_id, is_youtube_url

logger = logging.getLogger(__name__)

STAGE = "download"
REASONS = ("unavailable", "rate_limited", "network", "ffmpeg", "too_long", "invalid_id", "other")
RETRYABLE = ("rate_limited", "network", "other")
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# Message patterns, checked in this order (the first match wins). yt-dlp's own classes come
# first in :func:`classify`; these cover what only the message tells (YouTube's wording).
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("rate_limited", re.compile(r"HTTP Error 429|too many requests|not a bot|rate[- ]limit", re.I)),
    ("network", re.compile(r"HTTP Error (?:403|5\d\d)|forbidden", re.I)),
    ("ffmpeg", re.compile(r"postprocessing|ffmpeg|ffprobe|invalid data found|conversion failed", re.I)),
    ("unavailable", re.compile(
        r"private video|\bremoved\b|unavailable|not available|no longer available|terminated|copyright"
        r"|confirm your age|age[- ]restricted|\bage\b.*\b(?:verif|gate|limit)|inappropriate|members[- ]only"
        r"|your country|geo[- ]?restrict|HTTP Error 404|HTTP Error 410|not found|no such file|unsupported url:"
        r"|no video formats|requested format is not available", re.I)),
    ("network", re.compile(
        r"timed? ?out|connection|network|unreachable|reset by peer|incomplete ?read|content too short|more expected"
        r"|transport|ssl|temporary failure|name resolution", re.I)),
)


@dataclass(frozen=True)
class Settings:
    """What one download needs: the ``download`` config section and, on a Dask cluster, the
    cluster-wide pause and the per-machine slots. The ffmpeg binary is not in it: each worker
    resolves its own where the download runs (:attr:`ffmpeg`), so a worker whose ffmpeg lives
    elsewhere than the client's works."""

    cfg: DownloadConfig
    pause: SharedPause | None = None
    slots: HostSlots | None = None

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(config.download)

    @property
    def ffmpeg(self) -> str:
        """``download.ffmpeg``, else this machine's default (``$DEEPCURATOR_FFMPEG``, imageio-ffmpeg's)."""
        from deepcurator.audio import ffmpeg_exe

        return ffmpeg_exe(self.cfg.ffmpeg)


@dataclass(frozen=True)
class Outcome:
    """What became of one id: stored under ``key`` (``bytes`` long) or failed for ``reason``."""

    id: str
    key: str | None = None
    bytes: int = 0
    reason: str | None = None
    detail: str = ""


def url_for(template: str, item_id: str) -> str:
    """The source URL of ``item_id`` (``{id}`` in the template is replaced)."""
    return template.replace("{id}", item_id)


def id_problem(item_id: str, template: str) -> str | None:
    """Why ``item_id`` cannot be downloaded through the URL ``template``, or None when it can:
    every id must be 1 to 64 characters of ``A-Z a-z 0-9 _ -`` (it goes into a URL and a file
    name), and an id for a YouTube template must be a YouTube video id (11 of them)."""
    if not ID_RE.fullmatch(item_id):
        return f"not a valid video id: {item_id!r}"
    if is_youtube_url(template) and not is_video_id(item_id):
        return f"not a YouTube video id (11 characters of A-Z a-z 0-9 _ -): {item_id!r}"
    return None


def parse_rate(rate: str | None) -> int | None:
    """yt-dlp's ``--limit-rate`` syntax (``500K``, ``2M``, ``1.5M``) in bytes per second."""
    if rate is None:
        return None
    from yt_dlp.utils import parse_bytes

    value = parse_bytes(str(rate).strip())
    if not value or value <= 0:
        raise ConfigError(f"config key 'download.rate_limit' must look like 500K or 2M, got {rate!r}")
    return int(value)


class _QuietLogger:
    """yt-dlp logger that drops its chatter: errors reach us as exceptions."""

    def debug(self, msg: str) -> None:
        pass

    info = warning = error = debug


def ydl_options(cfg: DownloadConfig, ffmpeg: str, outdir: str | Path, item_id: str) -> dict[str, Any]:
    """yt-dlp options for downloading ``item_id``'s best audio into ``outdir`` as ``<id>.<ext>``.

    Post-processing (the duration check and the conversion) is added by :func:`fetch`.
    File URLs are enabled only when the URL template is a ``file://`` URL.
    """
    opts: dict[str, Any] = {
        "format": "bestaudio/best",
        "outtmpl": {"default": str(Path(outdir) / f"{item_id}.%(ext)s")},
        "paths": {"home": str(outdir), "temp": str(outdir)},
        "ffmpeg_location": ffmpeg,
        "noplaylist": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _QuietLogger(),
        "socket_timeout": cfg.timeout_s,
        "retries": cfg.retries,
        "fragment_retries": cfg.retries,
        "extractor_retries": cfg.retries,
        "file_access_retries": 0,
        "overwrites": True,
        "continuedl": False,
        "enable_file_urls": cfg.url_template.startswith("file://"),
    }
    if cfg.sleep_interval_s > 0:
        opts["sleep_interval"] = cfg.sleep_interval_s
        opts["max_sleep_interval"] = max(cfg.sleep_interval_s, cfg.max_sleep_interval_s)
    if cfg.sleep_requests_s > 0:
        opts["sleep_interval_requests"] = cfg.sleep_requests_s
    if cfg.rate_limit:
        opts["ratelimit"] = parse_rate(cfg.rate_limit)
    if cfg.cookies:
        opts["cookiefile"] = cfg.cookies
    return opts


def classify(exc: BaseException) -> str:
    """The failure reason (one of :data:`REASONS`) of an exception raised while fetching:
    by the exception classes along its cause chain first, then by message patterns."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import PostProcessingError

    causes = [exc]
    while True:
        inner = getattr(causes[-1], "exc_info", None)
        inner = inner[1] if inner else (causes[-1].__cause__ or getattr(causes[-1], "cause", None))
        if not isinstance(inner, BaseException) or inner in causes:
            break
        causes.append(inner)
    if any(isinstance(c, TooLong) for c in causes):
        return "too_long"
    if any(isinstance(c, PostProcessingError) for c in causes):
        return "ffmpeg"
    for cause in causes:
        if isinstance(cause, HTTPError):
            if cause.status == 429:
                return "rate_limited"
            if cause.status in (404, 410):
                return "unavailable"
            if cause.status >= 500 or cause.status in (403, 408):
                return "network"
    message = " ".join(str(c) for c in causes)
    for reason, pattern in _PATTERNS:
        if pattern.search(message):
            return reason
    if any(isinstance(c, (TransportError, TimeoutError, ConnectionError)) for c in causes):
        return "network"
    return "other"


_DURATION_RE = re.compile(r"Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")


def probe_duration(path: str | Path, ffmpeg: str, timeout: float = 60.0) -> float | None:
    """Duration in seconds from the container header of ``path`` (``ffmpeg -i``; no ffprobe
    needed); ``None`` when the header gives none. Raises ``ValueError`` when ffmpeg cannot read
    the file as media."""
    proc = subprocess.run([ffmpeg, "-nostdin", "-hide_banner", "-i", str(path)], capture_output=True,
                          timeout=timeout, check=False)
    text = proc.stderr.decode(errors="replace")
    match = _DURATION_RE.search(text)
    if match:
        h, m, s = match.groups()
        return int(h) * 3600 + int(m) * 60 + float(s)
    if "Stream #" not in text or "Audio:" not in text:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        raise ValueError(f"ffmpeg cannot read {Path(path).name}: {lines[-1] if lines else 'no audio stream'}")
    return None


def duration_guard(ydl: Any, max_duration_s: float, ffmpeg: str) -> Any:
    """A yt-dlp post-processor that fails a downloaded file that is not audio or is too long,
    before it is converted (most sources other than YouTube give no duration up front)."""
    from yt_dlp.postprocessor.common import PostProcessor
    from yt_dlp.utils import PostProcessingError

    class DurationGuard(PostProcessor):
        def run(self, info: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
            try:
                seconds = probe_duration(info["filepath"], ffmpeg)
            except (ValueError, subprocess.TimeoutExpired) as exc:
                raise PostProcessingError(str(exc)) from None
            if seconds is not None and seconds > max_duration_s:
                too_long = TooLong(f"{seconds:.0f} s is longer than {max_duration_s:.0f} s")
                raise PostProcessingError(str(too_long)) from too_long
            return [], info

    return DurationGuard(ydl)


def fetch(url: str, item_id: str, outdir: str | Path, cfg: DownloadConfig, ffmpeg: str) -> Path:
    """Download ``url``'s best audio into ``outdir`` and return the finished file
    (``<id>.mp3``, or ``<id>.<source ext>`` with ``keep_source``).

    Raises yt-dlp's ``YoutubeDLError`` subclasses (see :func:`classify`), :class:`TooLong` or
    :class:`~deepcurator.errors.InputError`.
    """
    import yt_dlp
    from yt_dlp.postprocessor import FFmpegExtractAudioPP

    opts = ydl_options(cfg, ffmpeg, outdir, item_id)
    if cfg.cookies:  # yt-dlp writes the jar back on exit: each download gets its own copy
        opts["cookiefile"] = shutil.copyfile(cfg.cookies, Path(outdir) / ".cookies.txt")
    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.extract_info(url, download=False)
        if info is None or info.get("_type") in ("playlist", "multi_video"):
            raise InputError(f"{url} is a playlist, not one video")
        if info.get("is_live"):
            raise TooLong("a live stream has no end")
        duration = info.get("duration")
        if duration and duration > cfg.max_duration_s:
            raise TooLong(f"{duration:.0f} s is longer than {cfg.max_duration_s:.0f} s")
        ydl.add_post_processor(duration_guard(ydl, cfg.max_duration_s, ffmpeg))
        codec = "best" if cfg.keep_source else "mp3"
        ydl.add_post_processor(FFmpegExtractAudioPP(ydl, preferredcodec=codec, preferredquality=str(cfg.bitrate_kbps)))
        info = ydl.process_ie_result(info, download=True)
    done = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
    done = [p for p in done if p.is_file() and p.stat().st_size > 0]
    if not done:
        raise yt_dlp.utils.DownloadError(f"no audio file came out of {url}")
    return done[0]


class _Pacer:
    """Process-wide pause after rate-limit answers: every worker thread waits it out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until = 0.0

    def wait(self) -> None:
        while True:
            with self._lock:
                left = self._until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 1.0))

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)


_PACER = _Pacer()


def download_one(item_id: str, settings: Settings, store: Store) -> Outcome:
    """Download ``item_id`` and put it in the store as ``audio/<id>.<ext>`` (atomically).

    After a rate-limit answer every download of this process (on a Dask cluster: of the
    cluster) pauses for ``rate_limit_backoff_s`` (doubled at each further answer for this id)
    and the id is tried again, up to ``rate_limit_retries`` times. On a cluster, a download
    holds one of its machine's ``download.workers`` slots. Expected failures are returned,
    not raised.
    """
    cfg = settings.cfg
    problem = id_problem(item_id, cfg.url_template)
    if problem:
        return Outcome(item_id, reason="invalid_id", detail=problem)
    with holding(settings.slots):
        return _download(item_id, settings, store)


def _download(item_id: str, settings: Settings, store: Store) -> Outcome:
    from yt_dlp.utils import YoutubeDLError

    cfg = settings.cfg
    pacer: _Pacer | SharedPause = settings.pause or _PACER
    url = url_for(cfg.url_template, item_id)
    attempt = 0
    while True:
        pacer.wait()
        with scratch_dir("dl") as tmp:
            try:
                path = fetch(url, item_id, tmp, cfg, settings.ffmpeg)
            except (YoutubeDLError, TooLong, InputError) as exc:
                reason, detail = classify(exc), _detail(exc)
            else:
                key = layout.audio_key(item_id, path.suffix)
                size = path.stat().st_size
                store.put_file(key, path)
                return Outcome(item_id, key=key, bytes=size)
        if reason != "rate_limited" or attempt >= cfg.rate_limit_retries:
            return Outcome(item_id, reason=reason, detail=detail)
        pacer.pause(cfg.rate_limit_backoff_s * 2 ** attempt)
        attempt += 1


def _detail(exc: BaseException) -> str:
    text = re.sub(r"^ERROR:\s*", "", str(exc)).strip()
    return text or type(exc).__name__


def read_ids(store: Store) -> list[str]:
    """The labelled ids of ``labels.csv`` in the store, in file order, without repeats. A store
    without one gets the project's shipped ``labels.csv`` (:func:`use_shipped_labels`)."""
    import pandas as pd

    if not store.exists(layout.LABELS):
        use_shipped_labels(store)
    df = pd.read_csv(io.BytesIO(store.get_bytes(layout.LABELS)), dtype={"youtube_id": "string"})
    if "youtube_id" not in df.columns:
        raise InputError(f"{layout.LABELS} has no youtube_id column")
    return list(dict.fromkeys(df["youtube_id"].dropna().str.strip()))


def use_shipped_labels(store: Store) -> None:
    """Copy the project's shipped ``labels.csv`` (the original's table labelled with the default
    settings; :mod:`deepcurator.shipped`) into a store that has none, as the original let
    users skip the labels step; said in a log line. :class:`InputError` when there is none."""
    found = shipped.find(shipped.LABELS)
    if found is None or not found.is_file():
        raise InputError(f"{layout.LABELS} is not in the store {store.describe()} and the project ships none here: "
                         "run `deepcurator labels` first")
    store.put_file(layout.LABELS, found)
    logger.info("download: the store %s has no %s; using the shipped %s (copied into the store)",
                store.describe(), layout.LABELS, found)


def stored_ids(store: Store) -> set[str]:
    """Ids with an audio object in the store (one paginated listing of ``audio/``)."""
    return {layout.audio_id(key) for key in store.list(layout.AUDIO_PREFIX)}


def plan(ids: Iterable[str], stored: set[str], log: FailureLog, retry: Iterable[str] = ()) -> Plan[str]:
    """Ids to download: not stored and not failed before, plus the failed ones whose reason is
    in ``retry``; skipped: already stored, failed before."""
    retry_ids = log.ids(retry)
    failed = log.ids()
    todo, in_store, failed_before = [], 0, 0
    for i in ids:
        if i in stored:
            in_store += 1
        elif i in failed and i not in retry_ids:
            failed_before += 1
        else:
            todo.append(i)
    return Plan(todo, {"already stored": in_store, "failed before": failed_before})


def _outcome(item_id: str, result: Outcome | BaseException) -> tuple[str | None, str]:
    if isinstance(result, BaseException):  # a bug in download_one: expected failures are returned
        return "other", f"{type(result).__name__}: {result}"
    return result.reason, result.detail


def run(config: Config, store: Store, *, retry: Iterable[str] = (), limit: int | None = None,
        workers: int | None = None) -> Summary:
    """The stage: download every labelled id not yet done (at most ``limit``); returns the summary.

    ``retry`` names the failure reasons to try again (``--retry-failed``). ``workers`` (default
    ``download.workers``) downloads run at once: threads of this process, or on a Dask cluster
    at most that many per machine.
    """
    if config.download.rate_limit:
        parse_rate(config.download.rate_limit)
    if config.download.cookies and not Path(config.download.cookies).is_file():
        raise ConfigError(f"config key 'download.cookies': {config.download.cookies} is not a file")
    log = FailureLog(store, STAGE)
    stored = stored_ids(store)
    for i in log.ids() & stored:  # a success the log missed (a run killed before its flush)
        log.clear(i)
    p = plan(read_ids(store), stored, log, retry)
    if limit is not None:
        p.todo = p.todo[:limit]
    total = 0

    def count(_: str, result: Outcome) -> None:
        nonlocal total
        total += result.bytes

    concurrency = workers or config.download.workers
    with make_executor(config, concurrency, kind="thread", store=store) as pool, \
            shared_pause(pool, STAGE) as pause:
        cookies = [config.download.cookies] if config.download.cookies else []
        task_store = worker_store(pool, store, ffmpeg=config.download.ffmpeg, files=cookies) if p.todo else store
        settings = Settings(config.download, pause=pause, slots=host_slots(pool, STAGE, concurrency))
        summary = run_plan(STAGE, p, download_one, settings, task_store, executor=pool, outcome=_outcome,
                           failures=log, on_done=count)
    summary.extra["bytes"] = fmt_bytes(total)
    return summary
