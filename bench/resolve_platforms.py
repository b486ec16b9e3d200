"""Ask pip to resolve the project's requirements for each platform users have, installing
nothing: ``make resolve-platforms`` (the result is recorded in bench/RESULTS.md, "Platforms").

    python bench/resolve_platforms.py [--extra gpu] [--only linux-x86_64 ...] [--out bench/out/platforms]

For each platform, pip runs ``install --dry-run --ignore-installed --only-binary=:all:
--platform TAG... --python-version 3.11 --report FILE`` on the ``[project] dependencies`` of
pyproject.toml (plus the named extras), so it picks wheels exactly as a user's pip on that
machine would, from the configured index (PyPI). One catch: pip evaluates environment markers
(``sys_platform``, ``platform_machine``, which choose the TensorFlow distribution here) for the
machine it runs on, whatever ``--platform`` says. So each resolution runs pip in a child
process whose marker environment is the target's: pip's vendored
``packaging.markers.default_environment`` is wrapped to return the target's values, for the
project's requirements and every transitive one alike.

Prints a Markdown table: per platform, whether it resolved (else pip's error), how many
distributions, and the TensorFlow, Keras and NumPy it would install. The pip reports are saved
under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = "3.11"


def _manylinux(arch: str) -> list[str]:
    """glibc 2.28 (Debian 10, RHEL 8, Ubuntu 18.10) and every older manylinux tag pip accepts."""
    return [f"manylinux_2_{minor}_{arch}" for minor in range(28, 16, -1)] + [f"manylinux2014_{arch}"]


# name: (pip --platform tags, the marker environment of that machine with Python 3.11)
PLATFORMS: dict[str, tuple[list[str], dict[str, str]]] = {
    "linux-x86_64": (_manylinux("x86_64"), {"sys_platform": "linux", "platform_system": "Linux",
                                            "platform_machine": "x86_64", "os_name": "posix"}),
    "linux-aarch64": (_manylinux("aarch64"), {"sys_platform": "linux", "platform_system": "Linux",
                                              "platform_machine": "aarch64", "os_name": "posix"}),
    "macos-arm64": (["macosx_14_0_arm64"], {"sys_platform": "darwin", "platform_system": "Darwin",
                                            "platform_machine": "arm64", "os_name": "posix"}),
    "macos-x86_64": (["macosx_14_0_x86_64"], {"sys_platform": "darwin", "platform_system": "Darwin",
                                              "platform_machine": "x86_64", "os_name": "posix"}),
    "windows-x86_64": (["win_amd64"], {"sys_platform": "win32", "platform_system": "Windows",
                                       "platform_machine": "AMD64", "os_name": "nt"}),
}
WATCHED = ("tensorflow", "tensorflow-cpu", "keras", "numpy")


def marker_environment(name: str) -> dict[str, str]:
    """The values PEP 508 markers see on the platform ``name`` with Python 3.11."""
    env = dict(PLATFORMS[name][1])
    env |= {"python_version": PYTHON, "python_full_version": f"{PYTHON}.9", "implementation_name": "cpython",
            "implementation_version": f"{PYTHON}.9", "platform_python_implementation": "CPython",
            "platform_release": "", "platform_version": ""}
    return env


def requirements(extras: list[str]) -> list[str]:
    """The project's requirement strings: ``[project] dependencies`` and the named extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return reqs


def _child(name: str, pip_args: list[str]) -> int:
    """Run pip in this process with the marker environment of ``name``."""
    from pip._vendor.packaging import markers

    target = marker_environment(name)
    original = markers.default_environment
    markers.default_environment = lambda: {**original(), **target}  # type: ignore[assignment]
    from pip._internal.cli.main import main

    return main(pip_args)


def resolve(name: str, extras: list[str], out: Path) -> dict[str, object]:
    """Resolve for the platform ``name``; a row of the table."""
    tags, _ = PLATFORMS[name]
    report = out / f"{name}{''.join('+' + e for e in extras)}.json"
    report.unlink(missing_ok=True)
    # --target: older pips take platform options only with one; --dry-run writes nothing there.
    pip_args = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--python-version", PYTHON,
                "--disable-pip-version-check", "--quiet", "--report", str(report), "--target", str(out / "target")]
    for tag in tags:
        pip_args += ["--platform", tag]
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--", *pip_args, *requirements(extras)],
                          capture_output=True, text=True)
    row: dict[str, object] = {"platform": name + "".join(f" [{e}]" for e in extras), "tags": tags[0]}
    if proc.returncode != 0 or not report.is_file():
        errors = [line.strip() for line in proc.stderr.splitlines() if line.startswith("ERROR")]
        row["result"] = "fails: " + (errors[0] if errors else f"pip exited with {proc.returncode}")
        return row
    installed = {re.sub(r"[-_.]+", "-", i["metadata"]["name"]).lower(): i
                 for i in json.loads(report.read_text())["install"]}
    row["result"] = f"resolves: {len(installed)} distributions"
    for dist in WATCHED:
        item = installed.get(dist)
        wheel = item["download_info"]["url"].rsplit("/", 1)[-1] if item else ""
        row[dist] = f"{item['metadata']['version']} ({wheel.split('-')[-1].removesuffix('.whl')})" if item else "-"
    return row


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return _child(sys.argv[2], sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extra", action="append", default=[], help="also resolve this extra (repeatable)")
    parser.add_argument("--only", nargs="+", choices=list(PLATFORMS), help="these platforms only")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "platforms", help="where pip's reports go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"Python {PYTHON}, only binary wheels; requirements: pyproject.toml [project] dependencies"
          + "".join(f" + [{e}]" for e in args.extra))
    print()
    print("| platform | pip --platform | result | " + " | ".join(WATCHED) + " |")
    print("|---|---|---|" + "---|" * len(WATCHED))
    failed = 0
    for name in args.only or PLATFORMS:
        row = resolve(name, args.extra, args.out)
        failed += str(row["result"]).startswith("fails")
        print(f"| {row['platform']} | `{row['tags']}` | {row['result']} | "
              + " | ".join(str(row.get(d, "")) for d in WATCHED) + " |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
