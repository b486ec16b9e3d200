"""Shared fixtures: configurations, both store backends (local folder and a real S3 protocol
server on loopback), and a runner for the ``deepcurator`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from deepcurator import config as config_mod
from deepcurator.store import Store, open_store

REPO = Path(__file__).resolve().parent.parent
SHARED_DATASET = REPO.parent / "shared" / "data" / "dataset.csv"


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


def make_s3_config(endpoint: str, tmp_path: Path) -> config_mod.Config:
    """A config pointing at a fresh bucket on the test S3 server."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return config_mod.from_dict({
        "store": {"path": str(tmp_path / "unused-local")},
        "s3": {"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1", "prefix": "deepcurator",
               "access_key": "testing", "secret": "testing"},
    })


@pytest.fixture(params=["local", "s3"])
def cfg(request: pytest.FixtureRequest, tmp_path: Path) -> config_mod.Config:
    """A configuration for each store backend: a local folder, then a bucket on the S3 server."""
    if request.param == "local":
        return config_mod.from_dict({"store": {"path": str(tmp_path / "store")}})
    return make_s3_config(request.getfixturevalue("s3_endpoint"), tmp_path)


@pytest.fixture
def store(cfg: config_mod.Config) -> Store:
    return open_store(cfg)


def write_config(cfg: config_mod.Config, path: Path) -> Path:
    """Write ``cfg`` as a YAML file (secrets included) for a subprocess to load."""
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict(redact=False)))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for running this checkout's ``deepcurator`` in a subprocess."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DEEPCURATOR_CONFIG", None)
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m deepcurator ARGS`` from this checkout and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "deepcurator", *args], cwd=cwd, env=cli_env(**env),
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def shared_dataset() -> Path:
    if not SHARED_DATASET.is_file():
        pytest.skip(f"the real Discogs table is absent ({SHARED_DATASET})")
    return SHARED_DATASET
