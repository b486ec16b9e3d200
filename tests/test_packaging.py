"""Installing on the machines users have: TensorFlow chosen by environment markers, a `gpu`
extra, the version written once, the MIT licence, and a clear line where TensorFlow is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import deepcurator

from tests.helpers.cli import REPO, cli_env

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _platforms():  # noqa: ANN202
    """bench/resolve_platforms.py, which `make resolve-platforms` runs: its marker environments."""
    spec = importlib.util.spec_from_file_location("resolve_platforms", REPO / "bench" / "resolve_platforms.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tensorflow_for(env: dict[str, str], extras: tuple[str, ...] = ()) -> list[str]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in PYPROJECT["optional-dependencies"][extra]]
    return sorted(f"{r.name}{sorted(r.extras) or ''}" for r in reqs if r.name.startswith("tensorflow")
                  and (r.marker is None or r.marker.evaluate({**env, "extra": extras[0] if extras else ""})))


@pytest.mark.parametrize(("platform", "expected"), [
    ("linux-x86_64", ["tensorflow-cpu"]),
    ("windows-x86_64", ["tensorflow-cpu"]),
    ("macos-arm64", ["tensorflow"]),
    ("linux-aarch64", ["tensorflow"]),
    ("macos-x86_64", []),  # no TensorFlow 2.21 wheel: the TensorFlow-free stages only
])
def test_tensorflow_is_chosen_by_platform(platform: str, expected: list[str]) -> None:
    assert _tensorflow_for(_platforms().marker_environment(platform)) == expected


def test_the_gpu_extra_is_tensorflow_with_cuda_on_linux() -> None:
    platforms = _platforms()
    assert _tensorflow_for(platforms.marker_environment("linux-x86_64"), ("gpu",)) == [
        "tensorflow-cpu", "tensorflow['and-cuda']"]
    assert _tensorflow_for(platforms.marker_environment("macos-arm64"), ("gpu",)) == ["tensorflow"]


def test_the_lock_is_the_linux_x86_64_resolution() -> None:
    lock = (REPO / "requirements.lock").read_text()
    assert "\ntensorflow-cpu==2.21." in lock and "\ntensorflow==" not in lock
    for req in PYPROJECT["dependencies"]:
        name = Requirement(req).name.lower()
        assert f"\n{name}==" in lock.lower() or name == "tensorflow", name


def test_the_version_is_written_once() -> None:
    from importlib.metadata import version

    assert "version" not in PYPROJECT and "version" in PYPROJECT["dynamic"]
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "deepcurator.__version__"}
    assert version("deepcurator") == deepcurator.__version__


def test_the_licence_is_mit() -> None:
    assert PYPROJECT["license"] == "MIT" and PYPROJECT["license-files"] == ["LICENSE"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License\n")


def test_a_model_command_without_tensorflow_is_one_line(tiny_model: Path, tmp_path: Path) -> None:
    """As on an Intel Mac, where the install has no TensorFlow: serve and rate say so in one line."""
    code = ("import sys; sys.modules['tensorflow'] = sys.modules['keras'] = None; "
            "from deepcurator.cli import main; raise SystemExit(main(sys.argv[1:]))")
    for args in (["serve", "--model", str(tiny_model)], ["rate", str(tmp_path), "--model", str(tiny_model)]):
        proc = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=cli_env(), capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        # Beside it, at most the warning that this model carries no spec (in either order: serve
        # passes its standard error through a logging thread, deepcurator.native_stderr).
        lines = [line for line in proc.stderr.strip().splitlines() if "carries no feature spec" not in line]
        assert lines == [f"deepcurator {args[0]}: error: TensorFlow is not installed in this environment; this "
                         'command needs it: see the README, "Install"'], proc.stderr
