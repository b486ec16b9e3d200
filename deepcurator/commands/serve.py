"""Run the prediction server. Without --production: Flask's threaded server, for development.
With --production: gunicorn with the shipped settings (deepcurator/serving/gunicorn_conf.py:
threaded workers, timeouts that cover the model's start, graceful shutdown, recycling,
TensorFlow threads per worker, metrics across workers), the same as
gunicorn -c python:deepcurator.serving.gunicorn_conf deepcurator.serving.wsgi:app
(docs/REFERENCE.md, "Serving and rating")."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from deepcurator.commands import int_in
from deepcurator.config import Config
from deepcurator.errors import ConfigError

GUNICORN_ARGS = ["-c", "python:deepcurator.serving.gunicorn_conf", "deepcurator.serving.wsgi:app"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: config serve.host)")
    parser.add_argument("--port", type=int_in(1, 65535), help="port, 1 to 65535 (default: config serve.port)")
    parser.add_argument("--model", help="runs/latest, runs/<run_id>, a .keras file or an http(s)/s3 URL "
                                        "(default: config serve.model)")
    parser.add_argument("--production", action="store_true",
                        help="run gunicorn with the shipped settings (DEEPCURATOR_GUNICORN_WORKERS, "
                             "DEEPCURATOR_GUNICORN_THREADS: 2 workers x 4 threads by default)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.model:
        cfg.set_by_flag("serve.model", args.model, "--model")
    host = args.host or cfg.serve.host
    port = args.port if args.port is not None else cfg.serve.port
    if args.production:
        return _production(args, cfg, host, port)

    from deepcurator.serving.app import create_app

    app = create_app(cfg)
    scorer = app.extensions["deepcurator_scorer"]
    print(f"serve: model {scorer.info.line()}, from {scorer.origin}; loaded in {scorer.load_seconds:.1f} s; "
          f"listening on http://{host}:{port}/ (POST /predict, GET /health, /metrics, /openapi.json)", flush=True)
    if cfg.serve.access_log != "off":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the access log has each request, with its id
    app.run(host=host, port=port, threaded=True, use_reloader=False)
    return 0


def _production(args: argparse.Namespace, cfg: Config, host: str, port: int) -> int:
    """Replace this process by gunicorn with the shipped configuration. The model is resolved
    (and a URL model downloaded) first, so that a missing model is one line here."""
    if sys.platform == "win32":
        raise ConfigError("gunicorn does not run on Windows; there, run "
                          "`pip install waitress` and `waitress-serve --listen=127.0.0.1:5000 "
                          "deepcurator.serving.wsgi:app` (docs/REFERENCE.md, \"Serving and rating\")")
    from deepcurator.serving.scoring import resolve_model

    resolve_model(cfg)
    env = dict(os.environ)
    if args.config:  # the workers load the configuration themselves: the same file
        env["DEEPCURATOR_CONFIG"] = str(Path(args.config).resolve())
    env["DEEPCURATOR_SERVE_MODEL"] = cfg.serve.model
    env["DEEPCURATOR_SERVE_HOST"] = host
    env["DEEPCURATOR_SERVE_PORT"] = str(port)
    argv = [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
    print(f"serve: gunicorn on http://{host}:{port}/ with deepcurator/serving/gunicorn_conf.py", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # not reached
