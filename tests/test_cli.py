"""The command line: every stage is a subcommand, and the original script names work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepcurator.cli import COMMANDS

from conftest import REPO, cli_env, run_cli


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
