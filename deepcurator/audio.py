"""Audio I/O: decoding any format ffmpeg reads to mono float32 at 22,050 Hz.

ffmpeg does the decode, the downmix (the mean of the channels, as librosa's ``to_mono``)
and the resampling (soxr) in one pass and streams raw float32 samples through a pipe.
The binary is the one shipped in the ``imageio-ffmpeg`` wheel unless one is named.
"""

from __future__ import annotations

import os
import subprocess
from functools import lru_cache

import numpy as np

from deepcurator.errors import InputError

SAMPLE_RATE = 22050


class DecodeError(InputError):
    """The file could not be decoded as audio (corrupt, not audio, or decoding timed out)."""


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

    One pass: decode, downmix by the mean of the channels (librosa's ``to_mono``; ffmpeg's
    ``-ac 1`` is not that), resample with soxr. ``max_duration`` (seconds) stops early.
    Every reader of audio (the process stage, the server's streaming decoder) runs this command.
    """
    cmd = [ffmpeg_exe(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error", "-i", os.fspath(path)]
    if max_duration is not None:
        cmd += ["-t", f"{max_duration:.3f}"]
    return cmd + ["-vn", "-sn", "-dn", "-af", f"pan=mono|c0=0.5*c0+0.5*c1,aresample={sr}:resampler=soxr",
                  "-f", "f32le", "-"]


def decode(
    path: str | os.PathLike[str],
    sr: int = SAMPLE_RATE,
    *,
    timeout: float | None = 120.0,
    max_duration: float | None = None,
    ffmpeg: str | None = None,
) -> np.ndarray:
    """Decode ``path`` to a mono waveform.

    Returns float32 samples in [-1, 1], shape ``(n_samples,)`` at ``sr`` Hz (see
    :func:`decode_command`). Raises :class:`DecodeError` for unreadable input or a decode that
    runs past ``timeout`` seconds.
    """
    cmd = decode_command(path, sr, max_duration=max_duration, ffmpeg=ffmpeg)
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise DecodeError(f"decoding {os.fspath(path)} took longer than {timeout:.0f} s") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise DecodeError(f"cannot decode {os.path.basename(path)}: {msg[-1] if msg else 'ffmpeg failed'}")
    y = np.frombuffer(proc.stdout, dtype=np.float32)
    if y.size == 0:
        raise DecodeError(f"cannot decode {os.path.basename(path)}: no audio stream")
    return y
