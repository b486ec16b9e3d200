"""Shared fixtures only: configurations, both store backends (a local folder and a real S3
protocol server on loopback) and the real Discogs table when present. The serving fixtures
(``tiny_model``, ``audio_set``, ``tiny_scorer``) come from the plugin module registered
below; plain helpers (``run_cli``, ``write_config``, ``make_audio``...) are in the
``tests.helpers`` package, imported where they are used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deepcurator import config as config_mod
from deepcurator.store import Store, open_store

from tests.helpers.cli import SHARED_DATASET
from tests.helpers.s3 import make_s3_config

pytest_plugins = ["tests.helpers.fixtures"]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """A real S3 protocol server (moto's server mode) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(params=["local", "s3"])
def cfg(request: pytest.FixtureRequest, tmp_path: Path) -> config_mod.Config:
    """A configuration for each store backend: a local folder, then a bucket on the S3 server."""
    if request.param == "local":
        return config_mod.from_dict({"store": {"path": str(tmp_path / "store")}})
    return make_s3_config(request.getfixturevalue("s3_endpoint"), tmp_path)


@pytest.fixture
def store(cfg: config_mod.Config) -> Store:
    return open_store(cfg)


@pytest.fixture
def shared_dataset() -> Path:
    """The real Discogs table (``../shared/data/dataset.csv``); the test is skipped without it."""
    if not SHARED_DATASET.is_file():
        pytest.skip(f"the real Discogs table is absent ({SHARED_DATASET})")
    return SHARED_DATASET
