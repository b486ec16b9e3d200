"""Streaming features: each 30-s slice's model input as soon as its samples are decoded.

A decoder thread runs :func:`deepcurator.audio.decode_chunks` (the same decoding as the
process stage), a feature thread computes slice ``k`` with :func:`deepcurator.features.logmel`
as soon as the samples it depends on have arrived, and the caller scores slice ``k`` while
the rest is decoded and slice ``k + 1`` is computed: decoding, features and the CNN overlap.
The result is bit-identical to ``features.model_input(features.logmel(audio.decode(path)))``
(a test proves it):

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
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np

from deepcurator import features
from deepcurator.audio import SAMPLE_RATE, decode_chunks

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
    30 s, while it is decoded.

    After iteration, ``n_samples`` and ``duration_s`` describe the decoded audio, and
    ``decode_s`` and ``features_s`` say how long the decoder ran and how long the slices'
    log-mels took (wall-clock seconds, for metrics).
    ``timeout`` (seconds) bounds the whole decode; ``max_duration`` (seconds) stops decoding
    there. Raises :class:`~deepcurator.audio.DecodeError` for unreadable input, no audio, or
    a timeout.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float | None = 30.0,
                 max_duration: float | None = None, ffmpeg: str | None = None) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self.max_duration = max_duration
        self.ffmpeg = ffmpeg
        self.n_samples = 0
        self.decode_s = 0.0
        self.features_s = 0.0

    @property
    def duration_s(self) -> float:
        return self.n_samples / SAMPLE_RATE

    def __iter__(self) -> Iterator[np.ndarray]:
        blocks = decode_chunks(self.path, SAMPLE_RATE, timeout=self.timeout, max_duration=self.max_duration,
                               ffmpeg=self.ffmpeg)
        samples: queue.Queue[object] = queue.Queue()
        ready: queue.Queue[object] = queue.Queue()
        stop = threading.Event()
        threads = [threading.Thread(target=self._decode, args=(blocks, samples, stop), daemon=True),
                   threading.Thread(target=self._featurize, args=(samples, ready, stop), daemon=True)]
        try:
            for thread in threads:
                thread.start()
            while (item := ready.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]  # neither _DONE nor an exception: a slice's array
        finally:
            stop.set()  # the consumer stopped early, or an error: both threads end after the block in hand
            for thread in threads:
                thread.join()

    def _decode(self, blocks: Iterator[np.ndarray], samples: queue.Queue[object], stop: threading.Event) -> None:
        started = time.perf_counter()
        try:
            _decode(blocks, samples, stop)
        finally:
            self.decode_s = time.perf_counter() - started

    def _featurize(self, samples: queue.Queue[object], ready: queue.Queue[object], stop: threading.Event) -> None:
        """Feature thread: compute slices while the caller runs the model on earlier ones;
        ``stop`` (the caller gave up) ends it after the slice in hand."""
        try:
            for x in self.slices(_received(samples)):
                if stop.is_set():
                    break
                ready.put(x)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
            ready.put(exc)
        finally:
            ready.put(_DONE)

    def slices(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Each whole slice's model input ``(128, 1291, 1)`` from consecutive blocks of the
        track's samples (float32, any sizes), as soon as the blocks so far allow; counts
        ``n_samples``."""
        pending = bytearray()   # f32le bytes from sample `base` on
        base = 0                # index (in the track) of pending's first sample
        k = 0
        self.n_samples = 0
        self.features_s = 0.0
        source = iter(blocks)
        eof = False
        while not eof:
            block = next(source, None)
            if block is None:
                eof = True
            else:
                data = np.ascontiguousarray(block, dtype=np.float32)
                pending += memoryview(data).cast("B")  # type: ignore[arg-type]  # numpy types ndarray as a Buffer on 3.12+ only
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
                started = time.perf_counter()
                segment = np.frombuffer(bytes(pending[lo:hi]), dtype=np.float32)
                x = slice_input(segment, drop)
                self.features_s += time.perf_counter() - started
                yield x
                k += 1
                next_start = slice_segment_bounds(k)[0]
                del pending[: (next_start - base) * BYTES_PER_SAMPLE]
                base = next_start


def _decode(blocks: Iterator[np.ndarray], samples: queue.Queue[object], stop: threading.Event) -> None:
    """Decoder thread: move blocks into the queue until the end (then ``None``), an error
    (then the exception, for the consumer's thread) or ``stop``."""
    try:
        for block in blocks:
            if stop.is_set():
                break
            samples.put(block)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer's thread
        samples.put(exc)
    finally:
        blocks.close()  # type: ignore[attr-defined]  # a generator (typed Iterator): stops the decoder if still running
        samples.put(None)


def _received(samples: queue.Queue[object]) -> Iterator[np.ndarray]:
    """The blocks the decoder thread queues, until its ``None``; its exception is raised here."""
    while (item := samples.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        yield item  # type: ignore[misc]  # neither None nor an exception: a block of samples


def slice_times(n: int) -> list[tuple[float, float]]:
    """Start and end (seconds) of each of ``n`` slices along the track."""
    return [(k * features.SLICE_SECONDS, (k + 1) * features.SLICE_SECONDS) for k in range(n)]

