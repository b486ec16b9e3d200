"""The service's API described in OpenAPI 3.1 (``GET /openapi.json``, linked from the page).

:func:`document` builds it for the server's ``serve`` settings, so the limits and the error
examples it shows are the server's own: the examples are the answers the server gives
(tests/test_openapi.py sends each documented request and compares).
"""

from __future__ import annotations

from typing import Any

from deepcurator import __version__
from deepcurator.config import ServeConfig

MODEL_EXAMPLE: dict[str, Any] = {"run_id": "20260101-120000", "sha256": "3f1c9a0b7d2e", "trained_on": "demo corpus",
                                 "synthetic_demo": True}
PREDICTION_EXAMPLE: dict[str, Any] = {
    "score": 63.18, "label": "good", "duration_s": 95.0, "run_id": "20260101-120000", "truncated": False,
    "slices": [{"start": 0.0, "end": 29.98, "score": 58.2}, {"start": 29.98, "end": 59.95, "score": 71.03},
               {"start": 59.95, "end": 89.93, "score": 60.31}],
    "model": MODEL_EXAMPLE,
}
HEALTH_EXAMPLE: dict[str, Any] = {"status": "ok", "model_loaded": True, "run_id": "20260101-120000",
                                  "version": __version__, "aggregation": "mean",
                                  "model": {**MODEL_EXAMPLE, "source": "model/model.keras (the store data has no "
                                                                      "finished run)"}}
METRICS_EXAMPLE = """\
# HELP deepcurator_http_requests_total HTTP requests answered, by route, method and status
# TYPE deepcurator_http_requests_total counter
deepcurator_http_requests_total{method="POST",route="/predict",status="200"} 12.0
# HELP deepcurator_inference_seconds Model time of a scored upload (all its slices)
# TYPE deepcurator_inference_seconds histogram
deepcurator_inference_seconds_bucket{le="0.5"} 11.0
deepcurator_inference_seconds_count 12.0
deepcurator_inference_seconds_sum 4.83
# HELP deepcurator_slices_scored_total 30-s slices scored by the model
# TYPE deepcurator_slices_scored_total counter
deepcurator_slices_scored_total 118.0
# HELP deepcurator_model_info The model that answers, and its feature spec (always 1)
# TYPE deepcurator_model_info gauge
deepcurator_model_info{aggregation="mean",hop="512",n_fft="2048",n_mels="128",run_id="20260101-120000",\
sample_rate="22050",slice_seconds="30",spec_version="1"} 1.0
"""


def error_examples(s: ServeConfig) -> dict[int, dict[str, tuple[str, str]]]:
    """``{status: {name: (what the request was, the error message)}}``, for ``s``'s limits."""
    return {
        400: {
            "no_file": ("no multipart field 'audio'", "no file: send the audio as the multipart form field 'audio'"),
            "empty": ("an empty file", "the uploaded file is empty"),
            "not_audio": ("a text file named track.mp3",
                          "not a readable audio file: cannot decode deepcurator-upload-k2j4x9q1.upload: Error opening "
                          "input files: Invalid data found when processing input"),
            "too_short": ("a 10-second track", "audio is 10.0 s long; at least 30 s (one slice) is needed"),
        },
        413: {
            "too_large": (f"an upload over serve.max_upload_mb ({s.max_upload_mb:g} MB)",
                          f"upload is larger than the {s.max_upload_mb:g} MB limit"),
            "too_long": (f"a track over serve.max_duration_s ({s.max_duration_s:g} s) with over_duration: reject",
                         f"audio is longer than the {s.max_duration_s:.0f} s limit (serve.max_duration_s; "
                         "serve.over_duration: truncate scores the start)"),
        },
    }


def _error_response(description: str, examples: dict[str, tuple[str, str]], status: int) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"},
        "examples": {name: {"summary": what, "value": {"error": message, "status": status}}
                     for name, (what, message) in examples.items()},
    }}}


def document(s: ServeConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``/predict``, ``/health`` and ``/metrics`` for the settings ``s``."""
    errors = error_examples(s)
    longer = "longer ones are refused" if s.over_duration == "reject" else "longer ones are scored on their start"
    limits = (f"Uploads up to {s.max_upload_mb:g} MB and {s.max_duration_s:g} s of audio ({longer}); "
              f"decoding may take {s.decode_timeout_s:g} s; a client that sends nothing for {s.read_timeout_s:g} s "
              "is answered 400.")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "DeepCurator", "version": __version__,
            "description": "Rate a track from its sound: 0 to 100, over 50 is \"good\". Each 30-s slice of the "
                           "upload is scored by a CNN on its log-mel spectrogram; the track's score aggregates them. "
                           "Every answer has an X-Request-ID header (the client's, when it sent a plain one).",
        },
        "paths": {
            "/predict": {"post": {
                "summary": "Score an audio file",
                "description": "Any format ffmpeg reads (mp3, wav, flac, ogg, m4a, ...). " + limits,
                "operationId": "predict",
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "description": "`text`: answer with the bare score (as `Accept: text/plain`)",
                                "schema": {"type": "string", "enum": ["text"]}}],
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "required": ["audio"],
                               "properties": {"audio": {"type": "string", "format": "binary",
                                                        "description": "the audio file"}}},
                }}},
                "responses": {
                    "200": {"description": "The track's score, label and per-slice scores", "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Prediction"},
                                             "examples": {"three_slices": {"summary": "a 95-second track",
                                                                           "value": PREDICTION_EXAMPLE}}},
                        "text/plain": {"schema": {"type": "string"},
                                       "examples": {"score": {"summary": "Accept: text/plain or ?format=text",
                                                              "value": "63.18\n"}}},
                    }},
                    "400": _error_response("Not a usable upload: no file, empty, not audio, too short, too slow "
                                           "to decode, or stopped arriving", errors[400], 400),
                    "413": _error_response("Over a limit: the upload's size, the form's shape or the audio's "
                                           "duration", errors[413], 413),
                },
            }},
            "/health": {"get": {
                "summary": "Whether the model is loaded, and which", "operationId": "health",
                "responses": {"200": {"description": "The server is up with its model", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Health"},
                                         "examples": {"up": {"value": HEALTH_EXAMPLE}}}}}},
            }},
            "/metrics": {"get": {
                "summary": "Metrics in the Prometheus text format", "operationId": "metrics",
                "description": "Requests by route and status, latency histograms of decoding, features and "
                               "inference, slices scored, upload sizes, and the model's id and feature spec.",
                "responses": {"200": {"description": "Prometheus text exposition format", "content": {
                    "text/plain": {"schema": {"type": "string"},
                                   "examples": {"some": {"summary": "an excerpt", "value": METRICS_EXAMPLE}}}}}},
            }},
        },
        "components": {"schemas": {
            "Prediction": {
                "type": "object", "required": ["score", "label", "duration_s", "run_id", "truncated", "slices"],
                "properties": {
                    "score": {"type": "number", "minimum": 0, "maximum": 100, "description": "0–100"},
                    "label": {"type": "string", "enum": ["good", "not-good"], "description": "good above 50"},
                    "duration_s": {"type": "number", "description": "decoded duration, seconds"},
                    "run_id": {"type": "string", "description": "the training run of the model"},
                    "truncated": {"type": "boolean", "description": "only the first serve.max_duration_s scored"},
                    "slices": {"type": "array", "items": {"$ref": "#/components/schemas/Slice"}},
                    "model": {"$ref": "#/components/schemas/Model"},
                },
            },
            "Model": {"type": "object", "required": ["run_id", "sha256", "trained_on", "synthetic_demo"],
                      "description": "which model answered",
                      "properties": {
                          "run_id": {"type": "string"},
                          "sha256": {"type": "string", "description": "the first 12 hex digits of the sha256 of "
                                                                      "its model.keras"},
                          "trained_on": {"type": ["string", "null"], "description": "the data it was trained on"},
                          "synthetic_demo": {"type": ["boolean", "null"],
                                             "description": "whether that was the synthetic demo corpus"},
                          "source": {"type": "string", "description": "/health only: where the server found it"},
                      }},
            "Slice": {"type": "object", "required": ["start", "end", "score"], "properties": {
                "start": {"type": "number", "description": "seconds"},
                "end": {"type": "number", "description": "seconds"},
                "score": {"type": "number", "minimum": 0, "maximum": 100},
            }},
            "Health": {"type": "object", "required": ["status", "model_loaded", "run_id", "version", "aggregation",
                                                     "model"],
                       "properties": {
                           "status": {"type": "string", "enum": ["ok"]},
                           "model_loaded": {"type": "boolean"},
                           "run_id": {"type": "string"},
                           "version": {"type": "string"},
                           "aggregation": {"type": "string", "enum": ["mean", "median", "topk"]},
                           "model": {"$ref": "#/components/schemas/Model"},
                       }},
            "Error": {"type": "object", "required": ["error", "status"], "properties": {
                "error": {"type": "string", "description": "one line saying what was wrong"},
                "status": {"type": "integer", "description": "the HTTP status, again"},
            }},
        }},
    }
