"""The prediction service: a Flask app factory.

``create_app(cfg)`` loads and warms the model once (no model: :class:`ConfigError`, so the
server refuses to start) and serves:

- ``POST /predict`` (multipart field ``audio``, any format ffmpeg reads): JSON
  ``{score, label, duration_s, run_id, truncated, slices: [{start, end, score}]}``, or the bare
  score with ``Accept: text/plain`` or ``?format=text``;
- ``GET /health``: ``{status, model_loaded, run_id, version, aggregation, model}``;
- ``GET /metrics``: the Prometheus text format (:mod:`deepcurator.serving.metrics`);
- ``GET /openapi.json``: the API described in OpenAPI 3.1, with examples
  (:mod:`deepcurator.serving.openapi`);
- ``GET /``: a page to rate one file or a batch, with each track's score and per-slice chart.

Every answer carries an ``X-Request-ID`` header (the client's, when it sent a plain one, else
a new one), and each request is one line of the access log (``serve.access_log``: ``text``,
``json`` lines, or ``off``) with that id.

``model`` (in /health and in every JSON answer) says which model it is: ``{run_id, sha256,
trained_on, synthetic_demo}`` (the first 12 hex digits of the sha256 of its ``model.keras``;
whether it was trained on the synthetic demo corpus), and /health adds ``source``, where the
server found it. The page says the same in words.

Bad uploads are JSON errors, never a 500 (docs/REFERENCE.md, "Serving and rating", has the table of errors). The server
reads nothing but the upload: the temporary copy has no name of the client's, and the
decoders accept only audio containers that read the file itself (:mod:`deepcurator.audio`).
A refused upload is answered promptly: what is left of its body is read (at most
:data:`DRAIN_LIMIT` bytes, for at most ``serve.read_timeout_s``) so that the client sees the
answer, and the connection is closed; a client that stops sending for ``serve.read_timeout_s``
gets a 400 and loses its worker thread.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge
from werkzeug.wsgi import LimitedStream

from deepcurator import __version__, native_stderr
from deepcurator.audio import DecodeError, DecodeTimeoutError
from deepcurator.config import Config
from deepcurator.errors import TooLong
from deepcurator.serving import openapi
from deepcurator.serving.metrics import (
    METRICS_CONTENT_TYPE,
    REQUEST_ID_HEADER,
    Metrics,
    log_access,
    request_id,
    setup_access_log,
)
from deepcurator.serving.scoring import Scorer, TooShort, load_scorer, score_file

DRAIN_LIMIT = 256 * 1024 * 1024  # read at most this much of a refused upload before answering
DRAIN_IDLE_S = 1.0                # while draining, a client that sends nothing for this long is answered
FORM_PARTS = 16                   # multipart parts per request: the file, and room for a few fields
FORM_FIELD_BYTES = 256 * 1024     # the largest text field (werkzeug also bounds each 64 KiB read by it)


def _error(status: int, message: str, *, close: bool = False) -> tuple[Response, int]:
    """A JSON error answer; ``close`` ends the connection after it (the body was not all read)."""
    response = jsonify({"error": message, "status": status})
    if close:
        response.headers["Connection"] = "close"
    return response, status


def _wants_text() -> bool:
    if request.args.get("format") == "text":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
    return (best == "text/plain"
            and request.accept_mimetypes["text/plain"] > request.accept_mimetypes["application/json"])


def create_app(cfg: Config, scorer: Scorer | None = None) -> Flask:
    """The Flask app for ``cfg`` (``serve`` section), with ``scorer`` or the configured model."""
    native_stderr.install()  # the mp3 decoder's per-frame notes go to a DEBUG logger, not the log
    app = Flask(__name__)
    s = cfg.serve
    app.config["MAX_CONTENT_LENGTH"] = int(s.max_upload_mb * 1024 * 1024)
    app.config["MAX_FORM_PARTS"] = FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = FORM_FIELD_BYTES
    scorer = scorer or load_scorer(cfg)
    app.extensions["deepcurator_scorer"] = scorer
    metrics = Metrics()
    metrics.set_model(scorer.run_id, scorer.aggregation, scorer.feature_spec)
    app.extensions["deepcurator_metrics"] = metrics
    setup_access_log(s.access_log)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if isinstance(exc, RequestEntityTooLarge):
            return _refuse_large(s.max_upload_mb, s.read_timeout_s)
        return _error(exc.code or 500, exc.description or exc.name)

    @app.before_request
    def start_request() -> None:
        g.request_id = request_id(request.headers.get(REQUEST_ID_HEADER))
        g.started = time.perf_counter()
        metrics.in_progress.inc()
        g.counted = True
        _set_read_timeout(s.read_timeout_s)

    @app.after_request
    def finish_request(response: Response) -> Response:
        rid = g.get("request_id") or request_id(None)
        response.headers[REQUEST_ID_HEADER] = rid
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        metrics.requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.request_seconds.labels(route).observe(elapsed)
        log_access(s.access_log, {
            "request_id": rid, "remote": request.remote_addr or "-", "method": request.method,
            "path": request.path, "route": route, "status": response.status_code,
            "bytes_in": request.content_length or 0, "bytes_out": response.calculate_content_length() or 0,
            "duration_s": round(elapsed, 4), **g.get("scored", {}),
        })
        return response

    @app.teardown_request
    def end_request(exc: BaseException | None) -> None:  # runs whatever happened, after_request or not
        if g.pop("counted", False):
            metrics.in_progress.dec()

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:  # a bug, not a bad upload: keep the answer JSON
        app.logger.exception("unexpected error (request %s)", g.get("request_id", "-"))
        return _error(500, f"internal error ({type(exc).__name__})")

    @app.get("/metrics")
    def prometheus_metrics() -> Any:
        return Response(metrics.exposition(), content_type=METRICS_CONTENT_TYPE)

    @app.get("/openapi.json")
    def openapi_document() -> Any:
        return jsonify(openapi.document(s))

    model = scorer.info.to_json()

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "ok", "model_loaded": True, "run_id": scorer.run_id, "version": __version__,
                        "aggregation": scorer.aggregation, "model": {**model, "source": scorer.origin}})

    @app.get("/")
    def index() -> Any:
        return render_template("index.html", run_id=scorer.run_id, max_upload_mb=s.max_upload_mb, version=__version__,
                               model=scorer.info)

    @app.post("/predict")
    def predict() -> Any:
        try:
            upload = request.files.get("audio")
        except ClientDisconnected:
            return _error(400, f"the upload stopped arriving (nothing for {s.read_timeout_s:g} s, "
                               "or the connection closed)", close=True)
        if upload is None:
            _drain(s.read_timeout_s)
            return _error(400, "no file: send the audio as the multipart form field 'audio'", close=True)
        # No name of the client's: not even its suffix reaches a decoder.
        fd, tmp = tempfile.mkstemp(prefix="deepcurator-upload-", suffix=".upload")
        try:
            with os.fdopen(fd, "wb") as out:
                upload.save(out)
            size = os.path.getsize(tmp)
            metrics.upload_bytes.observe(size)
            if size == 0:
                return _error(400, "the uploaded file is empty")
            result = score_file(scorer, tmp, decode_timeout=s.decode_timeout_s, max_duration_s=s.max_duration_s,
                                over_duration=s.over_duration)
            t = result.timings
            metrics.observe_score(len(result.slices), result.duration_s, t.decode_s, t.features_s, t.inference_s)
            g.scored = {"score": round(result.score, 2), "slices": len(result.slices),
                        "audio_s": round(result.duration_s, 2), "decode_s": round(t.decode_s, 3),
                        "features_s": round(t.features_s, 3), "inference_s": round(t.inference_s, 3)}
        except TooShort as exc:
            return _error(400, str(exc))
        except TooLong as exc:
            return _error(413, f"{exc} (serve.max_duration_s; serve.over_duration: truncate scores the start)")
        except DecodeTimeoutError as exc:
            return _error(400, f"{exc} (serve.decode_timeout_s)")
        except DecodeError as exc:
            return _error(400, f"not a readable audio file: {exc}")
        finally:
            Path(tmp).unlink(missing_ok=True)
        if _wants_text():
            return Response(f"{result.score:.2f}\n", mimetype="text/plain")
        return jsonify(result.to_json(scorer.run_id, model))

    return app


def _refuse_large(max_upload_mb: float, read_timeout_s: float) -> tuple[Response, int]:
    """The 413 for a request over a limit, with the limit it is over: the upload's size, or
    the form's shape (too many parts, a long text field, or no boundary where the header
    says). Reads what is left of the body first (:func:`_drain`)."""
    length = request.content_length
    if length is not None:
        over_size = length > (request.max_content_length or length)
    else:  # chunked: werkzeug's stream stops at the limit
        stream = _body_stream()
        over_size = isinstance(stream, LimitedStream) and stream.is_exhausted
    _drain(read_timeout_s)
    if over_size:
        return _error(413, f"upload is larger than the {max_upload_mb:g} MB limit", close=True)
    return _error(413, f"the form is not one file upload: at most {FORM_PARTS} parts, text fields up to "
                       f"{FORM_FIELD_BYTES // 1024} KiB, parts separated by the boundary its header declares; "
                       "send the file as the multipart field 'audio'", close=True)


def _body_stream() -> Any:
    """The stream the form parser reads the body from (werkzeug's, positioned after what it
    consumed), or the server's own input when the declared length is over the limit (then
    nothing has been read)."""
    try:
        return request.stream
    except RequestEntityTooLarge:
        return request.environ.get("wsgi.input")


def _drain(seconds: float) -> None:
    """Read and discard what is left of the request body, so that a client that sends all of
    it before reading the answer (curl, requests) sees the answer rather than a reset
    connection. Reads at most :data:`DRAIN_LIMIT` bytes for at most ``seconds``, and never
    past what the client declared: the part the form parser consumed is not waited for again.
    A client that stops sending for :data:`DRAIN_IDLE_S` (one that declared more than it
    sends, then waits for the answer) is answered then."""
    environ = request.environ
    length = request.content_length
    if length is not None:
        try:
            stream: Any = request.stream  # bounded by the declared length, after what was read
        except RequestEntityTooLarge:  # declared over the limit: nothing read yet
            if length > DRAIN_LIMIT:
                return
            stream = LimitedStream(environ["wsgi.input"], length)
    elif environ.get("wsgi.input_terminated"):
        stream = environ["wsgi.input"]  # chunked: the server ends it at the last chunk
    else:
        return
    _set_read_timeout(min(seconds, DRAIN_IDLE_S))
    deadline = time.monotonic() + seconds
    total = 0
    try:
        while total < DRAIN_LIMIT and time.monotonic() < deadline:
            block = stream.read(1 << 16)
            if not block:
                return
            total += len(block)
    except (OSError, ValueError, HTTPException):  # gone, timed out, or werkzeug's limit
        return


def _set_read_timeout(seconds: float) -> None:
    """Make every read of this request's socket give up after ``seconds`` without data
    (gunicorn's and werkzeug's servers expose the socket; others keep their own timeouts)."""
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if sock is not None and seconds > 0:
        try:
            sock.settimeout(seconds)
        except OSError:
            pass
