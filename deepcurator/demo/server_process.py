"""Running the server as a separate process: wait until it answers, stop it cleanly.

Used by the demo (and by the serving benchmark and tests), which start ``deepcurator serve``
or gunicorn as a user would and talk to it over HTTP.
"""

from __future__ import annotations

import signal
import subprocess
import time
from typing import Any

from deepcurator.errors import DeepCuratorError


def wait_until_healthy(url: str, proc: subprocess.Popen[Any], timeout: float = 180.0) -> dict[str, Any]:
    """Poll ``url``/health until it answers 200; returns its JSON. Raises
    :class:`DeepCuratorError` if ``proc`` exits first or ``timeout`` seconds pass."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeepCuratorError(f"the server exited with status {proc.returncode}")
        try:
            answer = requests.get(f"{url}/health", timeout=5)
            if answer.status_code == 200:
                return answer.json()
        except requests.RequestException:  # not listening yet, or a worker still loading
            pass
        time.sleep(0.5)
    raise DeepCuratorError(f"the server did not answer {url}/health within {timeout:.0f} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM ``proc`` (gunicorn and Flask shut down cleanly on it), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
