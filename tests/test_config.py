"""Configuration: defaults, the file, environment overrides and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepcurator import config
from deepcurator.errors import ConfigError

from conftest import run_cli


def test_defaults_without_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = config.load(environ={})
    assert cfg.store.path == "data"
    assert cfg.labels.n == 15000 and cfg.labels.prior_weight == 30 and cfg.labels.outlier_quantile == 0.99
    assert cfg.s3.bucket is None


def test_file_and_env_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("labels:\n  n: 10\ndownload:\n  workers: 3\n")
    cfg = config.load(f, environ={"DEEPCURATOR_DOWNLOAD_WORKERS": "16", "DEEPCURATOR_S3_BUCKET": "b"})
    assert cfg.labels.n == 10
    assert cfg.download.workers == 16  # the environment wins over the file
    assert cfg.s3.bucket == "b"


def test_deepcurator_config_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "other.yml"
    f.write_text("store:\n  path: /elsewhere\n")
    assert config.load(environ={"DEEPCURATOR_CONFIG": str(f)}).store.path == "/elsewhere"
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(environ={"DEEPCURATOR_CONFIG": str(tmp_path / "missing.yml")})


def test_original_s3_keys_keep_working() -> None:
    cfg = config.from_dict({"s3": {"region": "eu-west-1", "access_key": "AK", "secret": "SK", "bucket": "deepcurator"}})
    assert (cfg.s3.region, cfg.s3.access_key, cfg.s3.secret, cfg.s3.bucket) == ("eu-west-1", "AK", "SK", "deepcurator")
    assert cfg.to_dict()["s3"]["secret"] == "***"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"labels": {"nn": 3}}, "unknown config key 'labels.nn'"),
        ({"labls": {}}, "unknown config section 'labls'"),
        ({"labels": {"n": "many"}}, "config key 'labels.n' must be an integer"),
        ({"download": {"keep_source": "yes"}}, "config key 'download.keep_source' must be true/false"),
        ({"s3": {"endpoint_url": "http://127.0.0.1:9000"}}, "config key 's3.bucket' is missing"),
        ({"serve": {"aggregation": "max"}}, "serve.aggregation"),
    ],
)
def test_bad_config_is_one_readable_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_example_config_is_valid_and_complete() -> None:
    """config.yml.example documents every key with its default value."""
    import yaml

    example = yaml.safe_load((Path(__file__).parent.parent / "config.yml.example").read_text())
    assert config.from_dict(example) == config.Config()
    assert set(example) == set(config.Config().to_dict())
    for section, values in config.Config().to_dict().items():
        assert set(example[section]) == set(values), section


@pytest.mark.parametrize("body", ["labels:\n  n: ten\n", "unknown_section: 1\n", "labels: [\n"])
def test_cli_exits_nonzero_with_one_line(tmp_path: Path, body: str) -> None:
    (tmp_path / "config.yml").write_text(body)
    proc = run_cli("labels", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in proc.stderr
