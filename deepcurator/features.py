"""The log-mel features of :data:`deepcurator.spec.SPEC`, used by training and serving alike.

Every constant below comes from the spec (:mod:`deepcurator.spec`):

- STFT: n_fft 2048, hop 512, periodic Hann window, centred frames padded with zeros
  (librosa 0.11's defaults, ``pad_mode="constant"``);
- 128 mel bands, Slaney scale and norm, power spectrogram;
- decibels 10·log10(max(S, 1e-10)), an absolute floor (-100 dB), never relative to the track;
- slices of 1,291 frames (30 s), non-overlapping from the start.

:func:`logmel` is this project's own float32 implementation, checked against librosa
(``melspectrogram`` + ``power_to_db(ref=1.0, amin=1e-10, top_db=None)``) in the tests. It
works through the frames in cache-sized blocks: window, one real FFT over the block's frames,
power, and the mel product restricted to the bins each group of bands covers.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np
import scipy.fft

from deepcurator.audio import SAMPLE_RATE, decode
from deepcurator.spec import SPEC

N_FFT = SPEC.n_fft
HOP = SPEC.hop
N_MELS = SPEC.n_mels
AMIN = SPEC.db_amin
SLICE_FRAMES = SPEC.slice_frames  # 1,291: 30 s · 22,050 Hz / 512, rounded down
SLICE_SECONDS = SLICE_FRAMES * HOP / SAMPLE_RATE
STORED_DTYPE = np.dtype(SPEC.stored_dtype)

_BLOCK = 256  # frames per FFT block: 2 MiB of windowed samples, stays in cache
_BAND_GROUP = 16  # mel bands per matrix product (their bins are contiguous)


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    f = np.asarray(f, dtype=np.float64)
    linear = f / _MEL_F_SP
    return np.where(f >= _MEL_LOG_HZ, _MEL_LOG_MEL + np.log(np.maximum(f, 1e-300) / _MEL_LOG_HZ) / _MEL_LOG_STEP,
                    linear)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= _MEL_LOG_MEL, _MEL_LOG_HZ * np.exp(_MEL_LOG_STEP * (m - _MEL_LOG_MEL)), _MEL_F_SP * m)


_MEL_F_SP = 200.0 / 3  # Hz per mel below 1 kHz
_MEL_LOG_HZ = 1000.0
_MEL_LOG_MEL = _MEL_LOG_HZ / _MEL_F_SP
_MEL_LOG_STEP = np.log(6.4) / 27.0


@cache
def mel_basis(sr: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney mel filterbank, float32, shape ``(128, 1 + n_fft // 2)``: triangles between
    128 + 2 points equally spaced in mel from 0 Hz to sr/2, each scaled by 2 / its width in
    Hz (Slaney's norm). The same numbers as ``librosa.filters.mel(sr=sr, n_fft=2048)``,
    computed here so that workers and the server need not import librosa."""
    fft_hz = np.fft.rfftfreq(N_FFT, d=1.0 / sr)
    mel_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), N_MELS + 2))
    widths = np.diff(mel_hz)
    ramps = np.subtract.outer(mel_hz, fft_hz)
    weights = np.zeros((N_MELS, fft_hz.size), dtype=np.float32)
    for i in range(N_MELS):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:N_MELS]))[:, None]
    return weights


@cache
def _window() -> np.ndarray:
    """Periodic Hann window, float32, shape ``(n_fft,)``."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


@cache
def _band_groups(sr: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The mel basis cut into groups of bands, each with the range of bins it covers:
    ``(first band, end band, first bin, end bin, weights (bins, bands))``. The Slaney bands
    are sparse, so the products cost an eighth of a dense one."""
    basis = mel_basis(sr)
    groups = []
    for b0 in range(0, N_MELS, _BAND_GROUP):
        b1 = min(b0 + _BAND_GROUP, N_MELS)
        cols = np.flatnonzero(basis[b0:b1].any(axis=0))
        lo, hi = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
        groups.append((b0, b1, lo, hi, np.ascontiguousarray(basis[b0:b1, lo:hi].T)))
    return tuple(groups)


def n_frames(n_samples: int) -> int:
    """Frames of the centred STFT of ``n_samples`` samples: ``1 + n_samples // 512``."""
    return 1 + n_samples // HOP


def logmel(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram of a mono waveform.

    ``y``: samples, shape ``(n_samples,)`` (float32; other dtypes are converted). Returns
    dB values (10·log10 of the mel power, floor -100 dB), float32, shape
    ``(128, 1 + n_samples // 512)``. Uses one core.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"logmel needs a mono waveform of shape (n_samples,), got {y.shape}")
    padded = np.zeros(y.size + N_FFT, dtype=np.float32)
    padded[N_FFT // 2 : N_FFT // 2 + y.size] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]  # (F, n_fft), a view
    window = _window()
    groups = _band_groups(sr)
    out = np.empty((frames.shape[0], N_MELS), dtype=np.float32)
    block = np.empty((_BLOCK, N_FFT), dtype=np.float32)
    for start in range(0, frames.shape[0], _BLOCK):
        chunk = frames[start : start + _BLOCK]
        x = np.multiply(chunk, window, out=block[: chunk.shape[0]])
        spec = scipy.fft.rfft(x, axis=-1, overwrite_x=True, workers=1)  # (B, 1 + n_fft // 2) complex64
        parts = spec.view(np.float32)
        np.square(parts, out=parts)
        power = parts[:, 0::2] + parts[:, 1::2]  # |X|², (B, 1 + n_fft // 2)
        rows = out[start : start + chunk.shape[0]]
        for b0, b1, lo, hi, weights in groups:
            np.matmul(power[:, lo:hi], weights, out=rows[:, b0:b1])
    np.maximum(out, AMIN, out=out)
    np.log10(out, out=out)
    out *= 10.0
    return np.ascontiguousarray(out.T)


def quantize(S: np.ndarray) -> np.ndarray:
    """The stored, compact form of a log-mel (float16: steps of at most 0.031 dB between
    -128 and 0 dB). Both the trainer (reading the store) and the server (computing live)
    feed the model ``quantize(S)`` cast to float32."""
    return S.astype(STORED_DTYPE)


def n_slices(n_frames: int) -> int:
    """How many whole 30-s slices a track of ``n_frames`` frames has."""
    return n_frames // SLICE_FRAMES


def slices(S: np.ndarray) -> np.ndarray:
    """Cut a log-mel ``(128, F)`` into ``(F // 1291, 128, 1291)`` non-overlapping slices."""
    n = n_slices(S.shape[1])
    return S[:, : n * SLICE_FRAMES].reshape(N_MELS, n, SLICE_FRAMES).transpose(1, 0, 2)


def model_input(S: np.ndarray) -> np.ndarray:
    """The model's input for every slice of a track: float32 ``(n, 128, 1291, 1)`` from a
    log-mel in either form (live float32 or stored float16), through :func:`quantize`."""
    return slices(quantize(S)).astype(np.float32)[..., None]


def file_logmel(path: str | os.PathLike[str], **decode_kwargs: Any) -> np.ndarray:
    """Decode an audio file and compute its log-mel, float32 ``(128, F)``."""
    return logmel(decode(path, **decode_kwargs))
