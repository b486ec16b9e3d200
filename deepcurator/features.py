"""The log-mel features: the one definition used by training and serving (DESIGN.md).

- STFT: n_fft 2048, hop 512, Hann window, centred frames (librosa's defaults);
- 128 mel bands, Slaney scale and norm, power spectrogram;
- decibels 10·log10(max(S, 1e-10)), an absolute floor;
- slices of 1,291 frames (30 s), non-overlapping from the start.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from deepcurator.audio import SAMPLE_RATE, decode

N_FFT = 2048
HOP = 512
N_MELS = 128
AMIN = 1e-10
SLICE_FRAMES = 1291  # 30 s · 22,050 Hz / 512
SLICE_SECONDS = SLICE_FRAMES * HOP / SAMPLE_RATE
STORED_DTYPE = np.float16


@lru_cache(maxsize=None)
def mel_basis(sr: int = SAMPLE_RATE) -> np.ndarray:
    """Slaney mel filterbank, shape ``(128, 1 + n_fft // 2)``, float32."""
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)


def logmel(y: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Log-mel spectrogram of a mono waveform.

    ``y``: float32 samples, shape ``(n_samples,)``. Returns dB values, float32, shape
    ``(128, 1 + n_samples // 512)``.
    """
    import librosa

    spec = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)) ** 2
    mel = mel_basis(sr) @ spec
    return (10.0 * np.log10(np.maximum(mel, AMIN))).astype(np.float32)


def quantize(S: np.ndarray) -> np.ndarray:
    """The stored, compact form of a log-mel (float16). Both the trainer (reading the store)
    and the server (computing live) feed the model ``quantize(S)`` cast to float32."""
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


def file_logmel(path: str | os.PathLike[str], **decode_kwargs: object) -> np.ndarray:
    """Decode an audio file and compute its log-mel, float32 ``(128, F)``."""
    return logmel(decode(path, **decode_kwargs))
