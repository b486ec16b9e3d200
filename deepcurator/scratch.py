"""Scratch folders in the system temp folder that name their owner, so a killed owner's are found.

Stages work on local files in a scratch folder: a download before it reaches the store
(``dl``), an S3 object the process stage decodes (``process``), a training run's
checkpoints and logs (``run``), a model being evaluated (``eval``), the metrics files of a
gunicorn server's workers (``metrics``). The folder is removed on
exit and on error, but ``kill -9`` runs no cleanup. So each is named
``deepcurator-<kind>-<host>-<pid>-<random>``, like the store's ``.tmp-<host>-<pid>-…`` temp
files, and :func:`remove_stale` (run by every stage command as it starts) deletes the ones of
this host whose process is gone. A folder of a live process, or of another host sharing the
temp folder, is never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

PREFIX = "deepcurator-"
KINDS = ("dl", "process", "run", "eval", "metrics")

log = logging.getLogger(__name__)


def owner_tag() -> str:
    """``<host>-<pid>``: this process, as scratch folders and store temp files name their owner."""
    return f"{socket.gethostname()}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(tagged: str) -> bool:
    """Whether ``tagged``, ``<host>-<pid>-<random>`` (``random`` without ``-``, as tempfile's
    names), names a process of this host that no longer runs."""
    host, _, pid = tagged.rpartition("-")[0].rpartition("-")
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def scratch_dir(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A new folder ``deepcurator-<kind>-<host>-<pid>-<random>`` in the system temp folder,
    removed when the returned object is cleaned up (``with``, ``.cleanup()``, or collected)."""
    if kind not in KINDS:
        raise ValueError(f"unknown scratch kind {kind!r} (one of {', '.join(KINDS)})")
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind}-{owner_tag()}-")


def remove_stale(root: str | os.PathLike[str] | None = None) -> int:
    """Delete the scratch folders in ``root`` (default: the system temp folder) whose owner
    process of this host is gone; returns how many were removed."""
    root = Path(root) if root is not None else Path(tempfile.gettempdir())
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        kind, _, tagged = entry.name[len(PREFIX):].partition("-")
        if kind in KINDS and entry.is_dir(follow_symlinks=False) and owner_gone(tagged):
            shutil.rmtree(entry.path, ignore_errors=True)
            if os.path.lexists(entry.path):
                log.warning("could not remove the stale scratch folder %s", entry.path)
            else:
                log.info("removed %s, left by a killed process", entry.path)
                removed += 1
    return removed
