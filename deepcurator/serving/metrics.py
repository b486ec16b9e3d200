"""The server's metrics in the Prometheus text format (``GET /metrics``), through the
Prometheus client library, and its access log with request ids.

Metrics (every name starts with ``deepcurator_``):

- ``http_requests_total{route, method, status}`` and ``request_duration_seconds{route}``
  (a histogram); ``route`` is the URL rule (``/predict``), or ``unmatched`` for unknown paths,
  so a scan of random URLs cannot grow the series;
- per scored upload, histograms of the time spent decoding (``decode_seconds``), computing
  log-mels (``features_seconds``) and in the model (``inference_seconds``); decoding and
  features overlap with inference, so they do not add up to the request's time;
- ``slices_scored_total``, ``tracks_scored_total``, ``audio_seconds_scored_total``;
- ``upload_bytes`` (a histogram of upload sizes; its ``_sum`` is the bytes received);
- ``requests_in_progress``;
- ``model_info{run_id, aggregation, spec_version, sample_rate, n_fft, hop, n_mels,
  slice_seconds} 1``: which model answers, and its feature spec.

Under gunicorn every worker is its own process: the shipped configuration
(:mod:`deepcurator.serving.gunicorn_conf`) gives them a shared folder for the library's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), so ``/metrics`` adds up all workers
whichever one answers. Without it (Flask's server, one process) each app has its own registry.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import multiprocess as _multiprocess

from deepcurator.spec import FeatureSpec

__all__ = ["METRICS_CONTENT_TYPE", "Metrics", "log_access", "request_id", "setup_access_log"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_ID_HEADER = "X-Request-ID"
_GOOD_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # an id a client sends is kept when it looks like one

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BYTE_BUCKETS = tuple(float(1 << k) for k in range(14, 27, 2))  # 16 KiB … 64 MiB

access_logger = logging.getLogger("deepcurator.access")


def multiprocess_dir() -> str | None:
    """The multiprocess folder when the library runs in that mode (under gunicorn), else None."""
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """The metrics of one app: in its own registry, or in the multiprocess folder's files."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        disable_created_metrics()  # no *_created series: timestamps nobody graphs
        # In multiprocess mode the values live in the folder's files; the registry only names them.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("deepcurator_http_requests", "HTTP requests answered, by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("deepcurator_request_duration_seconds", "Time to answer a request",
                                         ["route"], buckets=REQUEST_BUCKETS, registry=r)
        self.in_progress = Gauge("deepcurator_requests_in_progress", "Requests being answered", registry=r,
                                 multiprocess_mode="livesum")
        self.decode_seconds = Histogram("deepcurator_decode_seconds", "Decoding time of a scored upload",
                                        buckets=STAGE_BUCKETS, registry=r)
        self.features_seconds = Histogram("deepcurator_features_seconds",
                                          "Log-mel time of a scored upload (all its slices)",
                                          buckets=STAGE_BUCKETS, registry=r)
        self.inference_seconds = Histogram("deepcurator_inference_seconds",
                                           "Model time of a scored upload (all its slices)",
                                           buckets=STAGE_BUCKETS, registry=r)
        self.slices = Counter("deepcurator_slices_scored", "30-s slices scored by the model", registry=r)
        self.tracks = Counter("deepcurator_tracks_scored", "Uploads scored", registry=r)
        self.audio_seconds = Counter("deepcurator_audio_seconds_scored", "Seconds of audio scored", registry=r)
        self.upload_bytes = Histogram("deepcurator_upload_bytes", "Size of uploads received (bytes)",
                                      buckets=BYTE_BUCKETS, registry=r)
        self.model_info = Gauge("deepcurator_model_info", "The model that answers, and its feature spec (always 1)",
                                ["run_id", "aggregation", "spec_version", "sample_rate", "n_fft", "hop", "n_mels",
                                 "slice_seconds"], registry=r, multiprocess_mode="max")

    def set_model(self, run_id: str, aggregation: str, spec: FeatureSpec) -> None:
        self.model_info.labels(run_id, aggregation, str(spec.version), str(spec.sample_rate), str(spec.n_fft),
                               str(spec.hop), str(spec.n_mels), f"{spec.slice_seconds:g}").set(1)

    def observe_score(self, n_slices: int, duration_s: float, decode_s: float, features_s: float,
                      inference_s: float) -> None:
        self.decode_seconds.observe(decode_s)
        self.features_seconds.observe(features_s)
        self.inference_seconds.observe(inference_s)
        self.slices.inc(n_slices)
        self.tracks.inc()
        self.audio_seconds.inc(duration_s)

    def exposition(self) -> bytes:
        """The text format of every metric: this app's, or all workers' in multiprocess mode."""
        path = multiprocess_dir()
        if self.multiprocess and path:
            registry = CollectorRegistry()
            _multiprocess.MultiProcessCollector(registry, path=path)
            return generate_latest(registry)
        return generate_latest(self.registry)


def request_id(incoming: str | None) -> str:
    """The request's id: the client's ``X-Request-ID`` when it is a plain token (letters,
    digits, ``._:-``, up to 128), else a new random one (32 hex digits)."""
    if incoming and _GOOD_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def setup_access_log(fmt: str) -> None:
    """One handler on standard error for the access log (``text`` or ``json`` lines), once
    per process; ``off`` silences it. The log does not propagate, so it is the same under
    Flask's server and gunicorn, whatever their own logging."""
    access_logger.propagate = False
    if fmt == "off":
        access_logger.setLevel(logging.CRITICAL + 1)
        return
    access_logger.setLevel(logging.INFO)
    if not access_logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_logger.addHandler(handler)


def log_access(fmt: str, entry: dict[str, Any]) -> None:
    """Write one access-log line for ``entry`` (time, request_id, remote, method, path, route,
    status, bytes_in, bytes_out, duration_s, and what scoring added)."""
    if fmt == "off":
        return
    entry = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **entry}
    if fmt == "json":
        access_logger.info(json.dumps(entry, separators=(",", ":")))
        return
    extra = " ".join(f"{k}={v}" for k, v in entry.items()
                     if k not in ("time", "remote", "method", "path", "status", "duration_s", "bytes_in", "bytes_out",
                                  "request_id", "route"))
    # time remote "METHOD path" status bytes-in/bytes-out B seconds id=... [score=... slices=... ...]
    access_logger.info('%s %s "%s %s" %s %s/%s B %.3f s id=%s%s', entry["time"], entry["remote"], entry["method"],
                       entry["path"], entry["status"], entry["bytes_in"], entry["bytes_out"], entry["duration_s"],
                       entry["request_id"], f" {extra}" if extra else "")
