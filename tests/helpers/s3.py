"""Configurations on the test S3 server (the ``s3_endpoint`` fixture of tests/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

from deepcurator import config as config_mod


def make_s3_config(endpoint: str, tmp_path: Path) -> config_mod.Config:
    """A config pointing at a fresh bucket on the test S3 server at ``endpoint``."""
    import boto3

    bucket = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return config_mod.from_dict({
        "store": {"path": str(tmp_path / "unused-local")},
        "s3": {"bucket": bucket, "endpoint_url": endpoint, "region": "us-east-1", "prefix": "deepcurator",
               "access_key": "testing", "secret": "testing"},
    })
