"""The WSGI entry point for production: ``gunicorn -c python:deepcurator.gunicorn_conf deepcurator.wsgi:app``
(the shipped settings: :mod:`deepcurator.gunicorn_conf`).

Run gunicorn without ``--preload``: TensorFlow is not fork-safe, so each worker imports this
module after the fork and loads and warms its own model. The configuration comes from
``config.yml`` / ``$DEEPCURATOR_CONFIG`` and ``DEEPCURATOR_*`` variables, as for the CLI.
"""

from deepcurator import config
from deepcurator.server import create_app

app = create_app(config.load())
