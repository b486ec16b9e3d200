"""gunicorn settings for production, as ``deepcurator serve --production`` runs them:
``gunicorn -c python:deepcurator.serving.gunicorn_conf deepcurator.serving.wsgi:app``.

- **Threaded workers** (``gthread``): a client that sends its upload slowly, or stops half-way,
  holds one thread, not a whole worker, and its reads give up after ``serve.read_timeout_s``
  (the app sets the socket's timeout). With gunicorn's default ``sync`` workers, two such
  clients stalled a two-worker server for 30 s, until gunicorn killed both workers and the
  replacements reloaded TensorFlow.
- **No preload**: TensorFlow is not fork-safe, so each worker imports the app after the fork and
  loads and warms its own model. ``timeout`` is the heartbeat: with threads it covers the
  worker's start (TensorFlow's import, the model's load and warm-up), not requests, so it is
  generous. A URL model is downloaded once, by the master before it starts the workers
  (:func:`on_starting`), not by every worker.
- **TensorFlow threads per worker**: ``serve.tf_threads`` when set, else the cores divided
  among the workers (at least 1), so that two workers do not each start a thread per core.
- **Recycling**: a worker is replaced after ``max_requests`` (with jitter, so workers do not
  restart together) to bound slow leaks in native libraries; ``graceful_timeout`` lets
  requests in progress finish on shutdown or recycling.
- **Metrics across workers**: the Prometheus client's multiprocess mode, in a folder made
  here (``deepcurator-metrics-<host>-<pid>-…`` in the temp folder, removed when the server
  stops; ``$PROMETHEUS_MULTIPROC_DIR`` when set), so ``/metrics`` counts every worker's
  requests whichever worker answers; a worker that exits is marked dead (:func:`child_exit`).
- The address comes from the DeepCurator configuration (``serve.host``, ``serve.port``), so
  one file configures the CLI server and gunicorn; gunicorn's own flags still override
  (``-b 0.0.0.0:8000``). ``DEEPCURATOR_GUNICORN_WORKERS`` and ``..._THREADS`` set the
  worker and thread counts (defaults 2 and 4).

Behind the internet, put a proxy that buffers request bodies (nginx does by default) in
front: gunicorn then only ever sees whole uploads (docs/REFERENCE.md, "Serving and rating").
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from typing import Any

from deepcurator import config as _config
from deepcurator import parallel as _parallel
from deepcurator import scratch as _scratch

_cfg = _config.load()
_serve = _cfg.serve

bind = f"{_serve.host}:{_serve.port}"
worker_class = "gthread"
workers = int(os.environ.get("DEEPCURATOR_GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("DEEPCURATOR_GUNICORN_THREADS", "4"))
preload_app = False
timeout = 180           # heartbeat; covers a worker's start (TensorFlow, the model, its warm-up)
graceful_timeout = 60   # requests in progress finish on shutdown and recycling
keepalive = 5
max_requests = 2000
max_requests_jitter = 200
# Uploads are multipart bodies; the request line and headers stay small.
limit_request_line = 8190
limit_request_fields = 100

# TensorFlow's threads per worker, through the environment the workers inherit (the app reads
# serve.tf_threads like any key): the cores shared among the workers unless set.
TF_THREADS = _serve.tf_threads or max(1, _parallel.default_workers() // max(1, workers))
if not _serve.tf_threads:
    os.environ["DEEPCURATOR_SERVE_TF_THREADS"] = str(TF_THREADS)

# The Prometheus client's multiprocess mode: set before any worker imports the library.
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix=f"{_scratch.PREFIX}metrics-{_scratch.owner_tag()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR


def on_starting(server: Any) -> None:
    """In the master, before any worker: remove what killed servers left, and fetch a URL
    or S3 model once (workers then find it in the cache). No model: one line, and exit 2."""
    from deepcurator.errors import DeepCuratorError
    from deepcurator.serving.scoring import resolve_model

    _scratch.remove_stale()
    try:
        source = resolve_model(_cfg)
    except DeepCuratorError as exc:
        print(f"deepcurator serve: error: {exc}", file=sys.stderr, flush=True)
        _remove_metrics_dir()
        os._exit(2)
    server.log.info("deepcurator: model %s (%s); %d workers x %d threads, %d TensorFlow threads each",
                    source.run_id, source.path, workers, threads, TF_THREADS)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges stop counting."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    _remove_metrics_dir()


def _remove_metrics_dir() -> None:
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
