"""Audio I/O: decoding any format to mono float32 at 22,050 Hz.

Two decoders, one output:

- **mp3** (what the download stage stores, and most uploads) is decoded in this process by
  mpg123 through libsndfile (the ``soundfile`` wheel, also what ``librosa.load`` reads mp3
  with), downmixed by the mean of its channels and resampled by soxr at its "HQ" (20-bit)
  setting, librosa's default ``soxr_hq``, in streaming blocks. mpg123 needs about 2.5 times
  less CPU than ffmpeg's mp3 decoder, which was two thirds of the feature path.
- **Everything else**, and any mp3 libsndfile cannot open, goes through ffmpeg: decode,
  downmix and the same soxr resampling in one pass, raw float32 through a pipe. The binary
  is the one shipped in the ``imageio-ffmpeg`` wheel unless one is named.

A given file always takes the same route, and soxr's streaming output does not depend on
how the input is cut, so the process stage (:func:`decode`) and the server's streaming
reader (:func:`decode_chunks`) get the same samples, bit for bit.
"""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from deepcurator.errors import InputError
from deepcurator.spec import SPEC

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import soundfile

SAMPLE_RATE = SPEC.sample_rate

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

_PIPE_READ = 1 << 20      # bytes per read from ffmpeg's pipe (11.9 s of output)
_MP3_BLOCK = 1 << 16      # frames per read from libsndfile (1.5 s at 44.1 kHz)

# The only demuxers ffmpeg may use: containers of audio that read nothing but the bytes of
# the file they are given. An upload is untrusted, and ffmpeg picks the demuxer from the
# content: a playlist (hls, m3u), a concat list, an image sequence or a lavfi graph would
# otherwise make it open further files on this machine (or URLs) and decode those instead.
# The mov demuxer follows external references only with ``enable_drefs``, off by default.
AUDIO_DEMUXERS = (
    "mp3", "wav", "w64", "flac", "ogg", "matroska,webm", "mov,mp4,m4a,3gp,3g2,mj2", "aac", "ac3",
    "eac3", "dts", "aiff", "caf", "asf", "au", "amr", "ape", "wv", "tta", "tak", "mpc", "mpc8", "dsf",
)
# Protocols likewise: the file itself, never the network or a pipe to another program.
_PROTOCOLS = "file"

# A decoder that stops this far short of the frame count in the stream's header has lost
# audio (mpg123 can end a damaged stream early without an error): the next decoder takes
# over. Headers without a frame count (CBR without a Xing/LAME tag) give an estimate that
# was measured up to 0.22 s off on healthy files, so the margin is 0.5 s (or 0.5 % of long
# variable-bitrate files, whose estimate is coarser).
_SHORT_READ_S = 0.5
_SHORT_READ_FRACTION = 0.005

# Decoded samples are nominally in [-1, 1]; float formats carry overs, and a damaged mp3
# frame decodes to bursts far beyond (up to 3,200 measured on bit-flipped files), but nothing
# that was ever audio reaches 64 (+36 dBFS) for long. Samples beyond are clipped to it (a
# damaged frame stays a short burst, and the features never overflow); a track with more than
# 10 % of its samples beyond (a float WAV of 1e30, say), or any NaN or infinity, is refused.
MAX_ABS_SAMPLE = 64.0
_MAX_OVER_FRACTION = 0.1


class DecodeError(InputError):
    """The file could not be decoded as audio (corrupt, not audio, or no audio stream)."""


class DecodeTimeoutError(DecodeError):
    """Decoding ran past its time limit."""


@cache
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
    ``max_duration`` (seconds) stops early. Only the demuxers of :data:`AUDIO_DEMUXERS` and
    the ``file`` protocol are allowed, so ffmpeg reads ``path`` and nothing else.
    """
    cmd = [ffmpeg_exe(ffmpeg), "-nostdin", "-hide_banner", "-loglevel", "error",
           "-protocol_whitelist", _PROTOCOLS, "-format_whitelist", ",".join(AUDIO_DEMUXERS),
           "-i", "file:" + os.path.abspath(path)]
    if max_duration is not None:
        cmd += ["-t", f"{max_duration:.3f}"]
    return [*cmd, "-map", "0:a:0", "-af", f"aresample={sr}:resampler=soxr:{_MEAN_DOWNMIX},{_REGROUP}",
            "-f", "f32le", "-c:a", "pcm_f32le", "-"]


def decoder_for(path: str | os.PathLike[str]) -> str:
    """Which decoder :func:`decode_chunks` uses for ``path``: ``"mpg123"`` or ``"ffmpeg"``."""
    f = _open_mp3(path)
    if f is None:
        return "ffmpeg"
    f.close()
    return "mpg123"


def decode_chunks(
    path: str | os.PathLike[str],
    sr: int = SAMPLE_RATE,
    *,
    timeout: float | None = 120.0,
    max_duration: float | None = None,
    ffmpeg: str | None = None,
) -> Iterator[np.ndarray]:
    """Decode ``path`` to a mono waveform, block by block, as the decoder delivers it.

    Yields float32 arrays of shape ``(n,)`` (n varies, up to a few seconds) at ``sr`` Hz,
    nominally in [-1, 1]; their concatenation is the track. ``max_duration`` (seconds)
    stops after that much audio. An mp3 that mpg123 gives up on part-way (it resyncs over
    at most 1 KiB of damage, ffmpeg over much more), or that it ends early without an
    error (more than 0.5 s short of the stream's frame count), is finished by ffmpeg from
    the same sample on, so a damaged file loses only its damage. Raises
    :class:`DecodeTimeoutError` when decoding runs past ``timeout`` seconds and
    :class:`DecodeError` for unreadable input, a file without audio, NaN or infinite
    samples, or mostly samples beyond :data:`MAX_ABS_SAMPLE` (fewer are clipped to it).
    Closing the generator early stops the decoder.
    """
    name = os.path.basename(os.fspath(path))
    deadline = None if timeout is None else time.monotonic() + timeout
    limit = None if max_duration is None else round(max_duration * sr)
    n = 0
    guard = _SampleGuard(name)
    mp3 = _open_mp3(path)
    if mp3 is not None:
        try:
            for block in _mp3_blocks(mp3, sr, limit):
                block = guard.check(block)
                n += block.size
                yield block
                _check_deadline(deadline, timeout, name)
            if n:
                return
        except _Mpg123Failed as exc:
            logger.info("mpg123 stopped on %s (%s); ffmpeg decodes the rest from %.1f s", name, exc, n / sr)
    skip = n  # samples mpg123 delivered before it gave up
    for block in _ffmpeg_blocks(path, sr, name, deadline, timeout, max_duration, ffmpeg):
        if skip:
            cut = min(skip, block.size)
            block, skip = block[cut:], skip - cut
        if block.size:
            block = guard.check(block)
            n += block.size
            yield block
    if n == 0:
        raise DecodeError(f"cannot decode {name}: no audio")


def decode(
    path: str | os.PathLike[str],
    sr: int = SAMPLE_RATE,
    *,
    timeout: float | None = 120.0,
    max_duration: float | None = None,
    ffmpeg: str | None = None,
) -> np.ndarray:
    """Decode ``path`` to a mono waveform: float32 samples, shape ``(n_samples,)`` at ``sr``
    Hz, nominally in [-1, 1]; the concatenation of :func:`decode_chunks` (same arguments,
    same errors)."""
    blocks = list(decode_chunks(path, sr, timeout=timeout, max_duration=max_duration, ffmpeg=ffmpeg))
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks)


def _open_mp3(path: str | os.PathLike[str]) -> soundfile.SoundFile | None:
    """``path`` opened by libsndfile if it holds mp3 it can read, else None (ffmpeg's turn)."""
    import soundfile

    try:
        f = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, OSError):
        return None
    if f.format != "MP3" or f.frames == 0:
        f.close()
        return None
    return f


class _Mpg123Failed(Exception):
    """mpg123 gave up on a damaged stream, or ended it short of its frame count."""


class _SampleGuard:
    """Checks decoded blocks as they pass: refuses NaN and infinities, clips samples beyond
    :data:`MAX_ABS_SAMPLE` in place and refuses a track once more than
    :data:`_MAX_OVER_FRACTION` of its samples so far were beyond."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = 0
        self.over = 0

    def check(self, block: np.ndarray) -> np.ndarray:
        """``block`` (float32, shape ``(n,)``), clipped; raises :class:`DecodeError`."""
        if not block.size:
            return block
        peak = float(np.max(np.abs(block)))
        if not np.isfinite(peak):
            raise DecodeError(f"cannot decode {self.name}: the audio holds NaN or infinite samples")
        self.seen += block.size
        if peak > MAX_ABS_SAMPLE:
            self.over += int(np.count_nonzero(np.abs(block) > MAX_ABS_SAMPLE))
            if self.over > _MAX_OVER_FRACTION * self.seen:
                raise DecodeError(f"cannot decode {self.name}: samples far beyond full scale (up to {peak:.3g}), "
                                  "not audio")
            block = np.clip(block, -MAX_ABS_SAMPLE, MAX_ABS_SAMPLE)
        return block


def _mp3_blocks(f: soundfile.SoundFile, sr: int, limit: int | None) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``sr`` from an mp3 open in libsndfile (closed at the end):
    read, mean of the channels, soxr; at most ``limit`` samples. Raises
    :class:`_Mpg123Failed` where mpg123 gives up, and after the last block when it ended
    more than :data:`_SHORT_READ_S` short of the header's frame count."""
    import soundfile
    import soxr

    with f:
        resampler = (soxr.ResampleStream(f.samplerate, sr, 1, dtype="float32", quality="HQ")
                     if f.samplerate != sr else None)
        buf = np.empty((_MP3_BLOCK, f.channels), dtype=np.float32)
        done = 0
        read = 0  # frames at the source rate
        last = False
        while not last and (limit is None or done < limit):
            try:
                x = f.read(out=buf)
            except soundfile.LibsndfileError as exc:
                raise _Mpg123Failed(str(exc)) from exc
            last = len(x) < _MP3_BLOCK
            read += len(x)
            mono = x[:, 0].copy()
            for c in range(1, f.channels):
                mono += x[:, c]
            if f.channels > 1:
                mono *= np.float32(1.0 / f.channels)
            out = resampler.resample_chunk(mono, last=last) if resampler is not None else mono
            if limit is not None:
                out = out[: limit - done]
            done += out.size
            yield out
        missing = f.frames - read
        if last and missing > max(_SHORT_READ_S * f.samplerate, _SHORT_READ_FRACTION * f.frames):
            raise _Mpg123Failed(f"ended {missing / f.samplerate:.1f} s short of the {f.frames / f.samplerate:.1f} s "
                                "in its header")


def _check_deadline(deadline: float | None, timeout: float | None, name: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DecodeTimeoutError(f"decoding {name} took longer than {timeout:g} s")


def _ffmpeg_blocks(path: str | os.PathLike[str], sr: int, name: str, deadline: float | None,
                   timeout: float | None, max_duration: float | None, ffmpeg: str | None) -> Iterator[np.ndarray]:
    """Blocks of ffmpeg's output (:func:`decode_command`); ffmpeg is killed at ``deadline``
    (``time.monotonic()``, ``timeout`` seconds after decoding began) and when the consumer
    stops early."""
    cmd = decode_command(path, sr, max_duration=max_duration, ffmpeg=ffmpeg)
    with tempfile.TemporaryFile() as err:  # a file: ffmpeg can never block on its own messages
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(max(deadline - time.monotonic(), 0.0), kill) if deadline is not None else None
        try:
            widen_pipe(proc.stdout.fileno())  # type: ignore[union-attr]  # stdout=PIPE: never None
            if timer is not None:
                timer.start()
            while data := proc.stdout.read(_PIPE_READ):  # type: ignore[union-attr]  # stdout=PIPE: never None
                yield np.frombuffer(data, dtype=np.float32)
            proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:  # the consumer stopped early, or an error
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]  # stdout=PIPE: never None
        if timed_out.is_set():
            raise DecodeTimeoutError(f"decoding {name} took longer than {timeout:g} s")
        if proc.returncode != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            if any("not on whitelist" in line for line in lines):
                raise DecodeError(f"cannot decode {name}: not an audio file (its format is not an audio container)")
            reason = lines[-1] if lines else f"ffmpeg exited with {proc.returncode}"
            raise DecodeError(f"cannot decode {name}: {reason}")


def widen_pipe(fd: int) -> None:
    """Grow a pipe's buffer to 1 MiB (Linux), so ffmpeg writes and Python reads in large
    chunks instead of 64 KiB ones: fewer context switches per track."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:  # not Linux, or above /proc/sys/fs/pipe-max-size: keep the default
        pass
