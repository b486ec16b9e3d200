"""Stopping a stage at a known point, so that a kill lands exactly there.

:func:`holding_ffmpeg` writes a stand-in for ffmpeg (the project finds it through
``$DEEPCURATOR_FFMPEG``): it runs the real ffmpeg, except when asked to decode one of the
named tracks; then it drops a marker file named after the track and waits, writing
nothing, until it is killed, or until its parent (the worker that started it) dies, so that
it never outlives a killed stage. A test waits for the marker and kills: the stage is then
exactly at "that track in flight". With ``once`` a track is held the first time only (a task
that Dask runs again after its worker was killed then goes through); with ``until_released``
the held ffmpeg carries on, as the real one, once the test calls :func:`release`.

Only the ffmpeg route of ``audio.decode`` is held: mp3s are decoded by mpg123 in-process, so
a test that holds a track gives it another format (ogg, m4a, wav...).
"""

from __future__ import annotations

import stat
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from deepcurator.audio import ffmpeg_exe

_WRAPPER = '''#!{python} -S
# A stand-in for ffmpeg written by tests/helpers/holds.py.
import ctypes, os, signal, sys, time

HOLD = {hold!r}
MARKERS = {markers!r}
REAL = {real!r}
ONCE = {once!r}
UNTIL_RELEASED = {until_released!r}

args = sys.argv[1:]
source = args[args.index("-i") + 1] if "-i" in args[:-1] else ""
track = os.path.basename(source).split(".")[0]
if track not in HOLD or (ONCE and os.path.exists(os.path.join(MARKERS, track))):
    os.execv(REAL, [REAL, *args])
parent = os.getppid()
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != parent:  # the parent died before the prctl
    sys.exit(1)
with open(os.path.join(MARKERS, track + ".tmp"), "w") as f:
    f.write(str(os.getpid()))
os.replace(os.path.join(MARKERS, track + ".tmp"), os.path.join(MARKERS, track))
go = os.path.join(os.path.dirname(MARKERS), "go", track)
while not (UNTIL_RELEASED and os.path.exists(go)):
    if UNTIL_RELEASED:
        time.sleep(0.05)
    else:
        signal.pause()
os.execv(REAL, [REAL, *args])
'''


def holding_ffmpeg(folder: Path, hold: Iterable[str], once: bool = False,
                   until_released: bool = False) -> tuple[Path, Path]:
    """Write the stand-in ffmpeg into ``folder`` (rewriting one there: a process that already
    resolved its path gets the new behaviour); it holds the tracks whose file name, up to the
    first dot, is in ``hold``: only the first time with ``once``, and until :func:`release`
    with ``until_released``. Returns ``(executable, markers)``: pass the executable as
    ``DEEPCURATOR_FFMPEG``; ``markers/<track>`` (holding the stand-in's pid) appears when that
    track is held."""
    folder.mkdir(parents=True, exist_ok=True)
    markers = folder / "held"
    markers.mkdir(exist_ok=True)
    (folder / "go").mkdir(exist_ok=True)
    exe = folder / "ffmpeg"
    tmp = folder / "ffmpeg.tmp"
    tmp.write_text(_WRAPPER.format(python=sys.executable, hold=sorted(set(hold)), markers=str(markers),
                                   real=ffmpeg_exe(), once=once, until_released=until_released))
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR)
    tmp.replace(exe)
    return exe, markers


def release(markers: Path, track: str) -> None:
    """Let the held ``track`` go on (a stand-in written with ``until_released``)."""
    (markers.parent / "go" / track).touch()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Check ``condition`` until it holds (True) or ``timeout`` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def held(markers: Path) -> set[str]:
    """The tracks held so far (their markers)."""
    return {p.name for p in markers.iterdir() if not p.name.endswith(".tmp")}
