"""The prediction service: a Flask app factory.

``create_app(cfg)`` loads and warms the model once (no model: :class:`ConfigError`, so the
server refuses to start) and serves:

- ``POST /predict`` (multipart field ``audio``, any format ffmpeg reads): JSON
  ``{score, label, duration_s, run_id, truncated, slices: [{start, end, score}]}``, or the bare
  score with ``Accept: text/plain`` or ``?format=text``;
- ``GET /health``: ``{status, model_loaded, run_id, version, aggregation}``;
- ``GET /``: a page to upload a file and see its score and per-slice chart.

Bad uploads are JSON errors, never a 500 (the README has the table of errors).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from deepcurator import __version__
from deepcurator.audio import DecodeError, DecodeTimeoutError
from deepcurator.config import Config
from deepcurator.predict import Scorer, TooLong, TooShort, load_scorer, score_file

DRAIN_LIMIT = 256 * 1024 * 1024  # read at most this much of a refused upload before answering


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify({"error": message, "status": status}), status


def _suffix(filename: str | None) -> str:
    """A safe file suffix for the temp copy (the decoders probe the content, the suffix only helps)."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix[1:].isalnum() and len(suffix) <= 8 else ""


def _wants_text() -> bool:
    if request.args.get("format") == "text":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/plain"])
    return best == "text/plain" and request.accept_mimetypes["text/plain"] > request.accept_mimetypes["application/json"]


def create_app(cfg: Config, scorer: Scorer | None = None) -> Flask:
    """The Flask app for ``cfg`` (``serve`` section), with ``scorer`` or the configured model."""
    app = Flask(__name__)
    s = cfg.serve
    app.config["MAX_CONTENT_LENGTH"] = int(s.max_upload_mb * 1024 * 1024)
    scorer = scorer or load_scorer(cfg)
    app.extensions["deepcurator_scorer"] = scorer

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if isinstance(exc, RequestEntityTooLarge):
            _drain()
            return _error(413, f"upload is larger than the {s.max_upload_mb:g} MB limit")
        return _error(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:  # a bug, not a bad upload: keep the answer JSON
        app.logger.exception("unexpected error")
        return _error(500, f"internal error ({type(exc).__name__})")

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "ok", "model_loaded": True, "run_id": scorer.run_id, "version": __version__,
                        "aggregation": scorer.aggregation})

    @app.get("/")
    def index() -> Any:
        return render_template("index.html", run_id=scorer.run_id, max_upload_mb=s.max_upload_mb, version=__version__)

    @app.post("/predict")
    def predict() -> Any:
        upload = request.files.get("audio")
        if upload is None:
            return _error(400, "no file: send the audio as the multipart form field 'audio'")
        fd, tmp = tempfile.mkstemp(prefix="deepcurator-upload-", suffix=_suffix(upload.filename))
        try:
            with os.fdopen(fd, "wb") as out:
                upload.save(out)
            if os.path.getsize(tmp) == 0:
                return _error(400, "the uploaded file is empty")
            result = score_file(scorer, tmp, decode_timeout=s.decode_timeout_s, max_duration_s=s.max_duration_s,
                                over_duration=s.over_duration)
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
        return jsonify(result.to_json(scorer.run_id))

    return app


def _drain() -> None:
    """Read what is left of a refused upload, so that clients that send the whole body before
    reading the answer (curl, requests) see the 413 rather than a reset connection."""
    stream = request.environ.get("wsgi.input")
    length = request.content_length or 0
    if stream is None or length > DRAIN_LIMIT:
        return
    try:
        while length > 0:
            block = stream.read(min(length, 1 << 20))
            if not block:
                break
            length -= len(block)
    except OSError:
        pass
