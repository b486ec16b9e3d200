"""Run the prediction server for development (Flask's threaded server). In production run
gunicorn instead: gunicorn -c python:deepcurator.serving.gunicorn_conf deepcurator.serving.wsgi:app
(docs/REFERENCE.md, "Serving and rating")."""

from __future__ import annotations

import argparse

from deepcurator.commands import int_in
from deepcurator.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to listen on (default: config serve.host)")
    parser.add_argument("--port", type=int_in(1, 65535), help="port, 1 to 65535 (default: config serve.port)")
    parser.add_argument("--model", help="runs/latest, runs/<run_id>, a .keras file or an http(s)/s3 URL "
                                        "(default: config serve.model)")


def run(args: argparse.Namespace, cfg: Config) -> int:
    from deepcurator.serving.app import create_app

    if args.model:
        cfg.set_by_flag("serve.model", args.model, "--model")
    host = args.host or cfg.serve.host
    port = args.port if args.port is not None else cfg.serve.port
    app = create_app(cfg)
    scorer = app.extensions["deepcurator_scorer"]
    print(f"serve: model {scorer.info.line()}, from {scorer.origin}; loaded in {scorer.load_seconds:.1f} s; "
          f"listening on http://{host}:{port}/ (POST /predict, GET /health)", flush=True)
    app.run(host=host, port=port, threaded=True, use_reloader=False)
    return 0
