"""Where the configuration is found (--config, $DEEPCURATOR_CONFIG, ./config.yml, the user's
config folder) and `deepcurator config`, which prints it with the origin of every value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepcurator import config
from deepcurator.errors import ConfigError

from tests.helpers.cli import run_cli


def _file(path: Path, n: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"labels:\n  n: {n}\n")
    return path


def test_the_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert config.find_file(environ={}) == (None, "")
    assert config.load(environ={}).labels.n == 15000

    user = _file(tmp_path / "xdg" / "deepcurator" / "config.yml", 1)
    assert config.user_config_file() == user
    cfg = config.load(environ={})
    assert cfg.labels.n == 1 and cfg.file == (user, "the user's config folder")
    assert cfg.origin("labels.n") == f"file {user}" and cfg.origin("labels.dataset") == "default"

    _file(work / "config.yml", 2)
    assert config.load(environ={}).labels.n == 2
    named = _file(tmp_path / "named.yml", 3)
    assert config.load(environ={"DEEPCURATOR_CONFIG": str(named)}).labels.n == 3
    flagged = _file(tmp_path / "flagged.yml", 4)
    cfg = config.load(flagged, environ={"DEEPCURATOR_CONFIG": str(named), "DEEPCURATOR_LABELS_N": "5"})
    assert cfg.labels.n == 5 and cfg.origin("labels.n") == "environment DEEPCURATOR_LABELS_N"
    assert cfg.file == (flagged, "--config")
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.yml", environ={})


def test_the_user_config_folder_without_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linux without XDG_CONFIG_HOME: ~/.config/deepcurator; macOS: Application Support."""
    import platformdirs.macos

    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert config.user_config_file() == tmp_path / ".config" / "deepcurator" / "config.yml"
    mac = platformdirs.macos.MacOS("deepcurator", appauthor=False, roaming=True).user_config_dir
    assert mac == str(tmp_path / "Library" / "Application Support" / "deepcurator")


def test_a_flag_is_an_origin() -> None:
    cfg = config.from_dict({})
    cfg.set_by_flag("serve.model", "runs/x", "--model")
    assert cfg.serve.model == "runs/x" and cfg.origin("serve.model") == "flag --model"
    assert cfg.origin("serve.port") == "default"


def test_deepcurator_config_prints_values_and_origins(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("s3:\n  bucket: b\n  access_key: AKIDSECRET1\n  secret: hush-hush\n"
                                         "labels:\n  n: 12\n")
    env = {"DEEPCURATOR_S3_PREFIX": "0755", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = run_cli("config", cwd=tmp_path, timeout=60, **env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "hush-hush" not in out and "AKIDSECRET1" not in out
    file = tmp_path / "config.yml"
    assert f"# file: {file} (found by ./config.yml)" in out
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if not line.startswith("#")}
    assert lines["prefix"].split("#")[0].strip() == "prefix: '0755'"
    assert lines["prefix"].endswith("# environment DEEPCURATOR_S3_PREFIX")
    assert lines["secret"].split("#")[0].strip() == "secret: '***'" and lines["secret"].endswith(f"# file {file}")
    assert lines["n"].endswith(f"# file {file}") and lines["port"].endswith("# default")

    data = json.loads(run_cli("config", "--json", cwd=tmp_path, timeout=60, **env).stdout)
    assert data["file"] == str(file) and data["found_by"] == "./config.yml"
    assert data["values"]["s3"]["prefix"] == {"value": "0755", "from": "environment DEEPCURATOR_S3_PREFIX"}
    assert data["values"]["s3"]["secret"]["value"] == "***"
    assert data["search_order"][-1] == str(tmp_path / "xdg" / "deepcurator" / "config.yml")


def test_a_bad_number_in_the_environment_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("config", cwd=tmp_path, timeout=60, DEEPCURATOR_SERVE_PORT="5e3")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("deepcurator config: error: environment variable DEEPCURATOR_SERVE_PORT "
                                   "must be an integer, got '5e3'")
