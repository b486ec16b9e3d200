"""The WSGI entry point for production: ``deepcurator serve --production``, which runs
``gunicorn -c python:deepcurator.serving.gunicorn_conf deepcurator.serving.wsgi:app``
(the shipped settings: :mod:`deepcurator.serving.gunicorn_conf`); on Windows,
``waitress-serve --listen=127.0.0.1:5000 deepcurator.serving.wsgi:app``.

Run gunicorn without ``--preload``: TensorFlow is not fork-safe, so each worker imports this
module after the fork and loads and warms its own model. The configuration comes from
``config.yml`` / ``$DEEPCURATOR_CONFIG`` and ``DEEPCURATOR_*`` variables, as for the CLI.
"""

from deepcurator import config
from deepcurator.serving.app import create_app

app = create_app(config.load())
