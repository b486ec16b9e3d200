"""The repository's paths and the ``deepcurator`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deepcurator import config as config_mod

REPO = Path(__file__).resolve().parents[2]
SHARED_DATASET = REPO.parent / "shared" / "data" / "dataset.csv"


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
