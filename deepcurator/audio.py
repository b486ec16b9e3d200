"""Audio I/O: decoding any format ffmpeg reads to mono float32 at 22,050 Hz.

ffmpeg does the decode, the downmix and the resampling (soxr) in one pass and streams raw
float32 samples through a pipe; nothing is decoded or resampled in Python. The binary is the
one shipped in the ``imageio-ffmpeg`` wheel unless one is named.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
from functools import lru_cache

import numpy as np

from deepcurator.errors import InputError

SAMPLE_RATE = 22050

# The downmix is the mean of all channels, as librosa's ``to_mono``, for any channel count
# and layout. ffmpeg's plain ``-ac 1`` is not that (stereo comes out +3 dB, 5.1 +13 dB), and a
# fixed ``pan`` expression only fits one channel count (``pan=mono|c0=0.5*c0+0.5*c1`` halves a
# mono file). libswresample's mixing matrix puts every channel on the centre with weight
# 1/sqrt(2) once the centre, surround and LFE levels are set as below, and ``rematrix_maxval=1``
# scales the row to sum 1: every channel then weighs 1/n. The same filter resamples with soxr
# (at its default 20-bit precision, soxr's "HQ" as librosa's default ``soxr_hq``), after the
# downmix, so only one channel is resampled.
_MEAN_DOWNMIX = "out_chlayout=mono:clev=0.5:slev=1:lfe_mix_level=0.7071067811865476:rematrix_maxval=1"

# ffmpeg (7 and later) runs demuxer, decoder, filters, encoder and muxer in threads that hand
# every frame on; regrouping the output into 16,384-sample frames (0.74 s) instead of mp3's
# 1,152 cuts the hand-offs after the filter by 14x. The samples are unchanged.
_REGROUP = "asetnsamples=n=16384:p=0"


class DecodeError(InputError):
    """The file could not be decoded as audio (corrupt, not audio, or no audio stream)."""


class DecodeTimeoutError(DecodeError):
    """Decoding ran past its time limit."""


@lru_cache(maxsize=None)
def ffmpeg_exe(explicit: str | None = None) -> str:
    """Path of the ffmpeg binary: ``explicit``, else ``$DEEPCURATOR_FFMPEG``, else imageio-ffmpeg's."""
    if explicit:
        return explicit
    if os.environ.get("DEEPCURATOR_FFMPEG"):
        return os.environ["DEEPCURATOR_FFMPEG"]
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def decode_command(
    path: str | os.PathLike[str],
    sr: int = SAMPLE_RATE,
    *,
    max_duration: float | None = None,
    ffmpeg: str | None = None,
) -> list[str]:
    """The ffmpeg command line that writes ``path`` to stdout as mono float32 (f32le) at ``sr`` Hz.

    One pass: decode the first audio stream (cover art, video and subtitles are ignored),
    downmix by the mean of the channels (librosa's ``to_mono``), resample with soxr.
    ``max_duration`` (seconds) stops early. ``path`` may be ``"-"`` (stdin) or a ``pipe:``
    URL. Every reader of audio (the process stage, the server's streaming decoder) runs
    this command.
    """
    cmd = [ffmpeg_exe(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", os.fspath(path)]
    if path == "-" or os.fspath(path).startswith("pipe:"):
        cmd.remove("-nostdin")
    if max_duration is not None:
        cmd += ["-t", f"{max_duration:.3f}"]
    return cmd + ["-map", "0:a:0", "-af", f"aresample={sr}:resampler=soxr:{_MEAN_DOWNMIX},{_REGROUP}",
                  "-f", "f32le", "-c:a", "pcm_f32le", "-"]


def decode(
    path: str | os.PathLike[str],
    sr: int = SAMPLE_RATE,
    *,
    timeout: float | None = 120.0,
    max_duration: float | None = None,
    ffmpeg: str | None = None,
) -> np.ndarray:
    """Decode ``path`` to a mono waveform.

    Returns float32 samples (nominally in [-1, 1]), shape ``(n_samples,)`` at ``sr`` Hz,
    read-only: a view of the bytes read from ffmpeg, not a copy (see :func:`decode_command`).
    Raises :class:`DecodeTimeoutError` when decoding runs past ``timeout`` seconds (ffmpeg is
    killed) and :class:`DecodeError` for unreadable input or a file without audio.
    """
    name = os.path.basename(os.fspath(path))
    cmd = decode_command(path, sr, max_duration=max_duration, ffmpeg=ffmpeg)
    with tempfile.TemporaryFile() as err:  # a file: ffmpeg can never block on its own messages
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        timer = threading.Timer(timeout, proc.kill) if timeout is not None else None
        try:
            widen_pipe(proc.stdout.fileno())
            if timer is not None:
                timer.start()
            data = proc.stdout.read()
            proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if timer is not None and timer.finished.is_set() and proc.returncode == -signal.SIGKILL:
            raise DecodeTimeoutError(f"decoding {name} took longer than {timeout:g} s")
        if proc.returncode != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise DecodeError(f"cannot decode {name}: {lines[-1] if lines else f'ffmpeg exited with {proc.returncode}'}")
    if len(data) == 0:
        raise DecodeError(f"cannot decode {name}: no audio")
    return np.frombuffer(data, dtype=np.float32)


def widen_pipe(fd: int) -> None:
    """Grow a pipe's buffer to 1 MiB (Linux), so ffmpeg writes and Python reads in large
    chunks instead of 64 KiB ones: fewer context switches per track."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:  # not Linux, or above /proc/sys/fs/pipe-max-size: keep the default
        pass
