"""Plain helpers for the test suite, importable as ``tests.helpers.<module>`` (pytest puts the
repository root on ``sys.path``: ``pythonpath = ["."]`` in pyproject.toml).

- :mod:`~tests.helpers.cli`: the repository paths, config files for subprocesses, and a
  runner for ``python -m deepcurator``;
- :mod:`~tests.helpers.s3`: a fresh bucket on the test S3 server as a config;
- :mod:`~tests.helpers.audio`: real audio files made by ffmpeg;
- :mod:`~tests.helpers.http_audio`: an HTTP media server on loopback that misbehaves on
  purpose and can hold requests (to kill a client at a known point);
- :mod:`~tests.helpers.holds`: a stand-in ffmpeg that stops on chosen inputs, and waiting
  for a condition;
- :mod:`~tests.helpers.serving`: a tiny model published as a run, the error-case audio set,
  a server on a port;
- :mod:`~tests.helpers.training`: small real-audio features for the training tests;
- :mod:`~tests.helpers.discogs`: a Discogs API stand-in and a dump writer.

Fixtures are not here but in ``tests/conftest.py`` and the plugin module it registers
(:mod:`tests.helpers.fixtures`); tests ask for them by name and never import them.
"""
