"""Streaming features: each 30-s slice's model input as soon as its samples are decoded.

ffmpeg runs :func:`deepcurator.audio.decode_command` in a subprocess; a reader thread drains
its pipe (so ffmpeg never waits on us), a feature thread computes slice ``k`` with
:func:`deepcurator.features.logmel` as soon as the samples it depends on have arrived, and
the caller scores slice ``k`` while ffmpeg decodes the rest and slice ``k + 1`` is computed:
decoding, features and the CNN overlap. The result is bit-identical to
``features.model_input(features.logmel(audio.decode(path)))`` (a test proves it):

- frame ``t`` of the centred STFT covers samples ``[512 t - 1024, 512 t + 1024)``, so slice
  ``k`` (frames ``1291 k … 1291 k + 1290``) needs samples ``[s0 - 1024, s1 + 512)`` with
  ``s0 = 1291 · 512 · k`` and ``s1 = s0 + 1291 · 512``: a little beyond its own 30 s;
- the log-mel of that segment, from its third frame on (the first two sit on the segment's
  own padding), is the track's log-mel of the slice; slice 0 starts at the track's start and
  uses the same padding as the whole track; a segment cut short by the end of the track gets
  the same end padding as the whole track.
"""

from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
from collections.abc import Iterator

import numpy as np

from deepcurator import features
from deepcurator.audio import SAMPLE_RATE, DecodeError, DecodeTimeoutError, widen_pipe, decode_command

HALF_WINDOW = features.N_FFT // 2          # samples each side of a frame centre
SLICE_SAMPLES = features.SLICE_FRAMES * features.HOP
BYTES_PER_SAMPLE = 4                       # f32le
_DONE = object()                           # end of the slices


def slice_segment_bounds(k: int) -> tuple[int, int, int]:
    """Samples ``[start, stop)`` the log-mel of slice ``k`` depends on, and how many leading
    frames of that segment's log-mel to drop (2, or 0 for slice 0)."""
    s0 = k * SLICE_SAMPLES
    stop = s0 + SLICE_SAMPLES - features.HOP + HALF_WINDOW
    if k == 0:
        return 0, stop, 0
    return s0 - HALF_WINDOW, stop, HALF_WINDOW // features.HOP


def slice_input(segment: np.ndarray, drop: int) -> np.ndarray:
    """Model input ``(128, 1291, 1)`` float32 of one slice from its segment of samples."""
    S = features.logmel(segment)[:, drop: drop + features.SLICE_FRAMES]
    return features.model_input(S)[0]


class SliceStream:
    """Iterate over a file's slices as model input ``(128, 1291, 1)`` float32, one per whole
    30 s, while ffmpeg decodes.

    After iteration, ``n_samples`` and ``duration_s`` describe the decoded audio.
    ``timeout`` (seconds) bounds the whole decode; ``max_duration`` (seconds) stops decoding
    there. Raises :class:`DecodeError` for input ffmpeg cannot read, no audio, or a timeout.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float | None = 30.0,
                 max_duration: float | None = None, chunk_s: float = 1.0, ffmpeg: str | None = None) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self.max_duration = max_duration
        self.chunk_bytes = max(1, int(chunk_s * SAMPLE_RATE)) * BYTES_PER_SAMPLE
        self.ffmpeg = ffmpeg
        self.n_samples = 0

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    def __iter__(self) -> Iterator[np.ndarray]:
        cmd = decode_command(self.path, SAMPLE_RATE, max_duration=self.max_duration, ffmpeg=self.ffmpeg)
        with tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            timed_out = threading.Event()

            def kill() -> None:
                timed_out.set()
                proc.kill()

            timer = threading.Timer(self.timeout, kill) if self.timeout else None
            chunks: queue.Queue[bytes | None] = queue.Queue()
            ready: queue.Queue[object] = queue.Queue()
            stop = threading.Event()
            threads = [threading.Thread(target=self._drain, args=(proc, chunks), daemon=True),
                       threading.Thread(target=self._featurize, args=(chunks, ready, stop), daemon=True)]
            try:
                widen_pipe(proc.stdout.fileno())  # type: ignore[union-attr]
                if timer:
                    timer.start()
                for thread in threads:
                    thread.start()
                while (item := ready.get()) is not _DONE:
                    if isinstance(item, BaseException):
                        raise item
                    yield item  # type: ignore[misc]
                proc.wait()
            finally:
                stop.set()
                if timer:
                    timer.cancel()
                if proc.poll() is None:  # the consumer stopped early, or an error
                    proc.kill()
                    proc.wait()
                for thread in threads:
                    thread.join()
                proc.stdout.close()  # type: ignore[union-attr]
            if timed_out.is_set():
                raise DecodeTimeoutError(f"decoding {os.path.basename(self.path)} took longer than {self.timeout:g} s")
            if proc.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                raise DecodeError(f"cannot decode {os.path.basename(self.path)}: {lines[-1] if lines else 'ffmpeg failed'}")
            if self.n_samples == 0:
                raise DecodeError(f"cannot decode {os.path.basename(self.path)}: no audio stream")

    def _drain(self, proc: subprocess.Popen[bytes], chunks: queue.Queue[bytes | None]) -> None:
        """Reader thread: move ffmpeg's output into the queue until EOF (then ``None``)."""
        try:
            while block := proc.stdout.read(self.chunk_bytes):  # type: ignore[union-attr]
                chunks.put(block)
        except (OSError, ValueError):  # the pipe was closed under us: the consumer gave up
            pass
        finally:
            chunks.put(None)

    def _featurize(self, chunks: queue.Queue[bytes | None], ready: queue.Queue[object], stop: threading.Event) -> None:
        """Feature thread: compute slices while the caller runs the model on earlier ones;
        ``stop`` (the caller gave up) ends it after the slice in hand."""
        try:
            for x in self._slices(chunks):
                if stop.is_set():
                    break
                ready.put(x)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
            ready.put(exc)
        finally:
            ready.put(_DONE)

    def _slices(self, chunks: queue.Queue[bytes | None]) -> Iterator[np.ndarray]:
        """Assemble samples from the queue; yield each slice as soon as it can be computed."""
        pending = bytearray()   # f32le bytes from sample `base` on
        base = 0                # index (in the track) of pending's first sample
        k = 0
        eof = False
        while not eof:
            block = chunks.get()
            if block is None:
                eof = True
            else:
                pending += block
            have = base + len(pending) // BYTES_PER_SAMPLE
            self.n_samples = have
            # Whole slices only: slice k exists when the track has (k + 1) · 1291 frames,
            # i.e. 1 + n // 512 >= (k + 1) · 1291.
            while True:
                start, stop, drop = slice_segment_bounds(k)
                complete = have >= stop
                if not complete and not (eof and 1 + have // features.HOP >= (k + 1) * features.SLICE_FRAMES):
                    break
                lo = (start - base) * BYTES_PER_SAMPLE
                hi = (min(stop, have) - base) * BYTES_PER_SAMPLE
                segment = np.frombuffer(bytes(pending[lo:hi]), dtype=np.float32)
                yield slice_input(segment, drop)
                k += 1
                next_start = slice_segment_bounds(k)[0]
                del pending[: (next_start - base) * BYTES_PER_SAMPLE]
                base = next_start


def slice_times(n: int) -> list[tuple[float, float]]:
    """Start and end (seconds) of each of ``n`` slices along the track."""
    return [(k * features.SLICE_SECONDS, (k + 1) * features.SLICE_SECONDS) for k in range(n)]

