"""The command line: every stage is a subcommand, and the original script names work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepcurator.cli import COMMANDS

from tests.helpers.cli import REPO, cli_env, run_cli


def test_help_lists_every_stage(tmp_path: Path) -> None:
    proc = run_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for name in ("labels", "download", "process", "train", "serve", "rate", "demo"):
        assert name in COMMANDS
        assert f"    {name} " in proc.stdout


@pytest.mark.parametrize(("script", "command"), [
    ("create_labels.py", "labels"), ("download_data.py", "download"), ("process_audio.py", "process"),
    ("train.py", "train"), ("server.py", "serve"),
])
def test_original_scripts_wrap_the_subcommands(tmp_path: Path, script: str, command: str) -> None:
    proc = subprocess.run([sys.executable, str(REPO / script), "--help"], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"deepcurator {command}" in proc.stdout


def test_config_flag_works_after_the_command_as_in_the_original_scripts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("labels:\n  nope: 1\n")
    for args in (("--config", str(bad), "labels"), ("labels", "--config", str(bad))):
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2
        assert "labels.nope" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run([sys.executable, str(REPO / "create_labels.py"), "--config", str(bad)], cwd=tmp_path,
                          env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "labels.nope" in proc.stderr


def small_dataset(path: Path, ids: int = 8) -> Path:
    """A Discogs table of ``ids`` items with distinct scores (enough for -n up to ids // 2)."""
    rows = ["discogs_id,have,want,rating_average,rating_count,price,youtube_id"]
    rows += [f"{i},{10 + i},{5 + 3 * i},{1 + (i % 5) * 0.8:.1f},{i * 7},{5 + i},id{i:09d}" for i in range(ids)]
    path.write_text("\n".join(rows) + "\n")
    return path


def one_line_error(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The single stderr line of a CLI input error (status 2, no traceback)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"deepcurator {command}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(("args", "message"), [
    (("labels", "-n", "-5"), "argument -n: must be at least 1, got -5"),
    (("labels", "-n", "0"), "argument -n: must be at least 1, got 0"),
    (("labels", "-n", "ten"), "argument -n: must be an integer at least 1, got 'ten'"),
    (("serve", "--port", "99999"), "argument --port: must be between 1 and 65535, got 99999"),
    (("serve", "--port", "0"), "argument --port: must be between 1 and 65535, got 0"),
    (("serve", "--port", "-1"), "argument --port: must be between 1 and 65535, got -1"),
    (("download", "--workers", "0"), "argument --workers: must be at least 1, got 0"),
    (("download", "--limit", "-1"), "argument --limit: must be at least 0, got -1"),
    (("process", "--workers", "-2"), "argument --workers: must be at least 0, got -2"),
    (("labels", "--no-such-flag"), "unrecognized arguments: --no-such-flag"),
])
def test_a_bad_flag_is_one_line_with_status_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    """With a usable dataset and config, so that a flag let through would reach the stage."""
    dataset = small_dataset(tmp_path / "dataset.csv")
    (tmp_path / "config.yml").write_text(f"labels:\n  dataset: {dataset}\n  n: 2\n  outlier_quantile: 1.0\n"
                                         f"store:\n  path: {tmp_path / 'store'}\n")
    line = one_line_error(run_cli(*args, cwd=tmp_path, timeout=120), args[0])
    assert message in line
    assert not (tmp_path / "store" / "labels.csv").exists()


def test_labels_n_flag_overrides_the_config(tmp_path: Path) -> None:
    dataset = small_dataset(tmp_path / "dataset.csv")
    (tmp_path / "config.yml").write_text(f"labels:\n  dataset: {dataset}\n  n: 1\n  outlier_quantile: 1.0\n"
                                         f"store:\n  path: {tmp_path / 'store'}\n")
    proc = run_cli("labels", "-n", "3", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "labelled 3 good + 3 not-good" in proc.stdout
    assert (tmp_path / "store" / "labels.csv").read_text().count("\n") == 1 + 6


@pytest.mark.parametrize(("body", "message"), [
    ("labels:\n  n: -5\n", "config key 'labels.n' must be at least 1"),
    ("labels:\n  prior_weight: -30\n", "config key 'labels.prior_weight' must not be negative"),
    ("labels:\n  weight_rating: -1\n", "config key 'labels.weight_rating' must not be negative"),
    ("labels:\n  weight_ratio: 0\n  weight_rating: 0\n  weight_price: 0\n", "must not all be 0"),
    ("serve:\n  port: 99999\n", "config key 'serve.port' must be between 1 and 65535"),
])
def test_bad_numbers_in_the_config_are_one_line(tmp_path: Path, body: str, message: str) -> None:
    dataset = small_dataset(tmp_path / "dataset.csv")
    (tmp_path / "config.yml").write_text(f"store:\n  path: {tmp_path / 'store'}\n{body}")
    for command in ("labels", "serve"):
        args = (command, "--dataset", str(dataset)) if command == "labels" else (command,)
        assert message in one_line_error(run_cli(*args, cwd=tmp_path, timeout=120), command)
