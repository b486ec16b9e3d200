"""Rebuilding dataset.csv from Discogs: the monthly releases dump plus the REST API.

- :mod:`~deepcurator.discogs.dump`: streams ``discogs_YYYYMMDD_releases.xml.gz`` one release
  at a time (flat memory) and filters it;
- :mod:`~deepcurator.discogs.api`: a paced client for ``GET /releases/{id}`` that follows the
  quota headers and backs off on 429 and 5xx;
- :mod:`~deepcurator.discogs.cache`: the SQLite cache of the dump scan and of every answer,
  so that a killed run resumes without fetching anything twice;
- :mod:`~deepcurator.discogs.build`: the three steps together, writing the table atomically.

This package imports only foundations (:mod:`deepcurator.config`, :mod:`deepcurator.errors`).
"""
