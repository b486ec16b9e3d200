"""gunicorn settings for production:
``gunicorn -c python:deepcurator.serving.gunicorn_conf deepcurator.serving.wsgi:app``.

- **Threaded workers** (``gthread``): a client that sends its upload slowly, or stops half-way,
  holds one thread, not a whole worker, and its reads give up after ``serve.read_timeout_s``
  (the app sets the socket's timeout). With gunicorn's default ``sync`` workers, two such
  clients stalled a two-worker server for 30 s, until gunicorn killed both workers and the
  replacements reloaded TensorFlow.
- **No preload**: TensorFlow is not fork-safe, so each worker imports the app after the fork and
  loads and warms its own model. ``timeout`` is the heartbeat: with threads it covers the
  worker's start (TensorFlow's import, the model's load and warm-up, a URL model's download),
  not requests, so it is generous.
- **Recycling**: a worker is replaced after ``max_requests`` (with jitter, so workers do not
  restart together) to bound slow leaks in native libraries; ``graceful_timeout`` lets
  requests in progress finish on shutdown or recycling.
- The address comes from the DeepCurator configuration (``serve.host``, ``serve.port``), so
  one file configures the CLI server and gunicorn; gunicorn's own flags still override
  (``-b 0.0.0.0:8000``). ``DEEPCURATOR_GUNICORN_WORKERS`` and ``..._THREADS`` set the
  worker and thread counts (defaults 2 and 4).

Behind the internet, put a proxy that buffers request bodies (nginx does by default) in
front: gunicorn then only ever sees whole uploads (docs/REFERENCE.md, "Serving and rating").
"""

from __future__ import annotations

import os

from deepcurator import config as _config

_serve = _config.load().serve

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
