"""Configuration: defaults, the file, environment overrides and one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from deepcurator import config
from deepcurator.errors import ConfigError

from tests.helpers.cli import run_cli


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
        ({"train": {"head": "attention"}}, "config key 'train.head' must be flatten or global_max"),
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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"labels": {"n": 0}}, "config key 'labels.n' must be at least 1"),
        ({"labels": {"prior_weight": -1}}, "config key 'labels.prior_weight' must not be negative"),
        ({"labels": {"weight_price": -0.5}}, "config key 'labels.weight_price' must not be negative"),
        ({"labels": {"weight_ratio": 0, "weight_rating": 0, "weight_price": 0}}, "must not all be 0"),
        ({"labels": {"prior_weight": float("nan")}}, "'labels.prior_weight' must be a finite number"),
        ({"download": {"timeout_s": 10**400}}, "'download.timeout_s' must be a finite number"),
        ({"serve": {"port": 0}}, "config key 'serve.port' must be between 1 and 65535"),
        ({"serve": {"port": 99999}}, "config key 'serve.port' must be between 1 and 65535"),
    ],
)
def test_out_of_range_numbers_are_one_readable_error(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(data)
    assert message in str(err.value) and "\n" not in str(err.value)


# --- secrets never appear in a message ------------------------------------------------------

SECRET = "hunter2-s3cr3t"


@pytest.mark.parametrize("value", [[SECRET], {SECRET: 1}, {"k": SECRET}, True])
@pytest.mark.parametrize("key", ["secret", "access_key"])
def test_a_bad_secret_value_is_not_shown(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict({"s3": {"bucket": "b", key: value}})
    message = str(err.value)
    assert f"'s3.{key}' must be a string" in message and "hidden" in message
    assert SECRET not in message and "True" not in message


def test_which_keys_are_secret() -> None:
    """s3.secret, s3.access_key and any future key named like a credential are secret."""
    for where in ("s3.secret", "s3.access_key", "serve.api_token", "store.password", "x.client_secret_id"):
        assert config.is_secret(where), where
        assert SECRET not in config.shown(where, [SECRET])
    for where in ("s3.bucket", "s3.prefix", "download.keep_source", "serve.host"):
        assert not config.is_secret(where) and SECRET in config.shown(where, SECRET)


def test_secret_keys_are_redacted_in_to_dict() -> None:
    data = config.from_dict({"s3": {"bucket": "b", "access_key": "AK", "secret": SECRET}}).to_dict()
    assert data["s3"]["access_key"] == data["s3"]["secret"] == "***" and data["s3"]["bucket"] == "b"


def test_cli_never_prints_a_secret(tmp_path: Path) -> None:
    """A wrong secret in the file, and a secret in the environment next to a bad value."""
    (tmp_path / "config.yml").write_text(f"s3:\n  bucket: b\n  secret: [{SECRET}]\n  access_key: {{a: {SECRET}}}\n")
    proc = run_cli("labels", cwd=tmp_path)
    assert proc.returncode == 2 and "s3.secret" in proc.stderr and SECRET not in proc.stderr + proc.stdout
    (tmp_path / "config.yml").unlink()
    proc = run_cli("labels", cwd=tmp_path, DEEPCURATOR_S3_SECRET=f"[{SECRET}]", DEEPCURATOR_S3_ACCESS_KEY="AK",
                   DEEPCURATOR_S3_BUCKET="b", DEEPCURATOR_S3_MULTIPART_THRESHOLD_MB="big")
    assert proc.returncode == 2 and SECRET not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines() == [
        "deepcurator labels: error: environment variable DEEPCURATOR_S3_MULTIPART_THRESHOLD_MB must be an integer, "
        "got 'big'"]


# --- environment values are read by their key's type, not as YAML ---------------------------

def test_env_strings_are_taken_verbatim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"DEEPCURATOR_S3_PREFIX": "0755", "DEEPCURATOR_S3_BUCKET": "no", "DEEPCURATOR_S3_REGION": "1e3",
           "DEEPCURATOR_S3_SECRET": f"[{SECRET}]", "DEEPCURATOR_S3_ACCESS_KEY": "null",
           "DEEPCURATOR_STORE_PATH": "/mnt/a: b #c", "DEEPCURATOR_DOWNLOAD_URL_TEMPLATE": "{id}"}
    cfg = config.load(environ=env)
    assert (cfg.s3.prefix, cfg.s3.bucket, cfg.s3.region) == ("0755", "no", "1e3")
    assert (cfg.s3.secret, cfg.s3.access_key) == (f"[{SECRET}]", "null")
    assert cfg.store.path == "/mnt/a: b #c" and cfg.download.url_template == "{id}"


def test_env_numbers_and_booleans_are_parsed_by_type(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_text("s3:\n  region: eu-west-1\n  prefix: v2\n")
    env = {"DEEPCURATOR_DOWNLOAD_WORKERS": " 16 ", "DEEPCURATOR_DOWNLOAD_TIMEOUT_S": "2.5",
           "DEEPCURATOR_DOWNLOAD_RETRIES": "0", "DEEPCURATOR_DOWNLOAD_KEEP_SOURCE": "yes",
           "DEEPCURATOR_TRAIN_RANDOM_CROPS": "False", "DEEPCURATOR_S3_REGION": "", "DEEPCURATOR_S3_PREFIX": ""}
    cfg = config.load(f, environ=env)
    assert (cfg.download.workers, cfg.download.timeout_s, cfg.download.retries) == (16, 2.5, 0)
    assert cfg.download.keep_source is True and cfg.train.random_crops is False
    assert cfg.s3.region is None  # empty unsets an optional key
    assert cfg.s3.prefix == ""  # and is the empty string for a string key


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DEEPCURATOR_DOWNLOAD_WORKERS", "ten", "environment variable DEEPCURATOR_DOWNLOAD_WORKERS must be an integer"),
        ("DEEPCURATOR_DOWNLOAD_WORKERS", "1.5", "DEEPCURATOR_DOWNLOAD_WORKERS must be an integer, got '1.5'"),
        ("DEEPCURATOR_DOWNLOAD_WORKERS", "", "DEEPCURATOR_DOWNLOAD_WORKERS must be an integer, got ''"),
        ("DEEPCURATOR_DOWNLOAD_TIMEOUT_S", "[1, 2]", "DEEPCURATOR_DOWNLOAD_TIMEOUT_S must be a finite number"),
        ("DEEPCURATOR_DOWNLOAD_TIMEOUT_S", "nan", "DEEPCURATOR_DOWNLOAD_TIMEOUT_S must be a finite number"),
        ("DEEPCURATOR_DOWNLOAD_KEEP_SOURCE", "maybe", "DEEPCURATOR_DOWNLOAD_KEEP_SOURCE must be true/false"),
        ("DEEPCURATOR_DOWNLOAD_WORKERS", "0", "config key 'download.workers' must be positive"),
        ("DEEPCURATOR_SERVE_PORT", "99999", "config key 'serve.port' must be between 1 and 65535"),
    ],
)
def test_bad_env_value_is_one_line_naming_the_variable(name: str, value: str, message: str,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        config.load(environ={name: value})
    assert message in str(err.value) and "\n" not in str(err.value)


# --- unreadable config files ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a folder, not a config file"),
        (lambda p: p.write_bytes("labels:\n  dataset: caf\u00e9.csv\n".encode("latin-1")), "not UTF-8 text"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"), "not UTF-8 text"),
        (lambda p: p.write_bytes(b"labels:\x00\n  n: 3\n"), "not valid YAML"),
        (lambda p: p.write_text("- labels\n- download\n"), "must hold a mapping of sections, got list"),
        (lambda p: p.write_text("just words\n"), "must hold a mapping of sections, got str"),
        (lambda p: p.write_text("0\n"), "must hold a mapping of sections, got int"),
    ],
)
def test_unreadable_config_file_is_one_line_from_the_cli(tmp_path: Path, make: Callable[[Path], object],
                                                         message: str) -> None:
    make(tmp_path / "bad.yml")
    for args in (("--config", "bad.yml", "labels"), ("labels",)):
        env = {} if "--config" in args else {"DEEPCURATOR_CONFIG": "bad.yml"}
        proc = run_cli(*args, cwd=tmp_path, **env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith("deepcurator labels: error: bad.yml: ") and message in lines[0]


def test_utf8_file_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    f = tmp_path / "c.yml"
    f.write_bytes("\ufefflabels:\n  dataset: café.csv\n".encode())
    assert config.load(f, environ={}).labels.dataset == "café.csv"
