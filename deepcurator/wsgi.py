"""The WSGI entry point for production: ``gunicorn -w 2 -b 127.0.0.1:5000 'deepcurator.wsgi:app'``.

Run gunicorn without ``--preload``: TensorFlow is not fork-safe, so each worker imports this
module after the fork and loads and warms its own model. The configuration comes from
``config.yml`` / ``$DEEPCURATOR_CONFIG`` and ``DEEPCURATOR_*`` variables, as for the CLI.
"""

from deepcurator import config
from deepcurator.server import create_app

app = create_app(config.load())
