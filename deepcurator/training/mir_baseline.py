"""The strong baseline: hand-crafted features a MIR engineer would try first, and
gradient-boosted trees (scikit-learn) on them.

Each 30-s slice's stored log-mel (128 bands × 1,291 frames, dB, 22,050 Hz, hop 512) becomes
:data:`N_FEATURES` numbers, all computed from that log-mel (evaluation reads only the store):

- MFCC 1–20 (DCT of the log-mel): mean and standard deviation over time, and the standard
  deviation of their frame-to-frame deltas;
- spectral contrast in 7 octave bands from 200 Hz (on the mel power spectrum): mean and std;
- chroma: the mel bands' power folded onto the 12 pitch classes by centre frequency
  (55 Hz – 2 kHz only; mel bands are wider than a semitone above ~1 kHz, so this chroma is
  coarser than an STFT's), normalised per frame: mean and std;
- onset strength (spectral flux of the log-mel): mean, std, max and the 90th percentile;
- tempo stability: the tempogram's peak (normalised autocorrelation of the onset envelope)
  at its strongest lag and its mean, the spread over time of the frame-wise strongest lag,
  and the coefficient of variation of the beat tracker's inter-beat intervals.

A :class:`~sklearn.ensemble.HistGradientBoostingClassifier` is fitted on the training slices
for each setting of :data:`GRID`; the one with the best validation slice ROC-AUC is kept.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from deepcurator.training.data import SliceItems, read_window

SR = 22050
HOP = 512
N_MFCC = 20
N_FEATURES = 3 * N_MFCC + 14 + 24 + 4 + 4
GRID = tuple({"learning_rate": lr, "max_depth": d} for lr in (0.05, 0.1) for d in (2, 3))


def _mel_centres(n_mels: int) -> np.ndarray:
    import librosa

    return np.asarray(librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=SR / 2)[1:-1])


def slice_mir_features(window: np.ndarray) -> np.ndarray:
    """The strong baseline's features of one log-mel window ``(128, frames[, 1])`` dB → ``(N_FEATURES,)``."""
    import librosa

    db = window.reshape(window.shape[0], -1).astype(np.float64)
    power = 10.0 ** (db / 10.0)
    mfcc = librosa.feature.mfcc(S=db, n_mfcc=N_MFCC)
    d_mfcc = np.diff(mfcc, axis=1)
    freqs = _mel_centres(db.shape[0])
    contrast = librosa.feature.spectral_contrast(S=power, freq=freqs, n_bands=6, fmin=200.0)
    in_range = (freqs >= 55.0) & (freqs <= 2000.0)
    pc = np.round(12 * np.log2(freqs[in_range] / 440.0)).astype(int) % 12
    chroma = np.zeros((12, db.shape[1]))
    np.add.at(chroma, pc, power[in_range])
    chroma /= chroma.max(axis=0, keepdims=True) + 1e-12
    onset = librosa.onset.onset_strength(S=db, sr=SR, hop_length=HOP)
    tempogram = librosa.feature.tempogram(onset_envelope=onset, sr=SR, hop_length=HOP, win_length=256)
    mean_tg = tempogram[1:].mean(axis=1)  # lag 0 is 1 by definition
    best_lag = np.argmax(tempogram[1:], axis=0)
    _, beats = librosa.beat.beat_track(onset_envelope=onset, sr=SR, hop_length=HOP)
    ibi = np.diff(beats)
    ibi_cv = float(ibi.std() / ibi.mean()) if ibi.size >= 2 and ibi.mean() > 0 else 1.0
    return np.concatenate([
        mfcc.mean(axis=1), mfcc.std(axis=1), d_mfcc.std(axis=1),
        contrast.mean(axis=1), contrast.std(axis=1),
        chroma.mean(axis=1), chroma.std(axis=1),
        [onset.mean(), onset.std(), onset.max(), np.percentile(onset, 90)],
        [mean_tg.max(), mean_tg.mean(), float(np.std(best_lag)), ibi_cv],
    ])


def slice_features(items: SliceItems, workers: int = 2) -> np.ndarray:
    """:func:`slice_mir_features` of every slice of ``items``: ``(n, N_FEATURES)``."""
    if len(items) == 0:
        return np.zeros((0, N_FEATURES))
    with ThreadPoolExecutor(workers) as pool:
        return np.stack(list(pool.map(lambda a: slice_mir_features(read_window(*a)), items.windows())))


def fit(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        seed: int) -> tuple[Any, dict[str, float]]:
    """Gradient-boosted trees with the setting of :data:`GRID` giving the best validation
    slice ROC-AUC (the first on ties). Returns the fitted model and its setting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    best: tuple[float, Any, dict[str, float]] | None = None
    # One OpenMP thread: the data are a few hundred rows, and OpenMP's spinning threads made
    # fitting hundreds of times slower on a loaded 2-core machine.
    with threadpool_limits(1):
        for setting in GRID:
            model = HistGradientBoostingClassifier(max_iter=200, l2_regularization=1.0, min_samples_leaf=10,
                                                   random_state=seed, **setting)
            model.fit(x_train, y_train)
            auc = roc_auc_score(y_val, model.predict_proba(x_val)[:, 1]) if len(np.unique(y_val)) == 2 else 0.0
            if best is None or auc > best[0]:
                best = (auc, model, dict(setting))
    assert best is not None
    return _SingleThreaded(best[1]), best[2]


class _SingleThreaded:
    """A fitted model whose ``predict_proba`` runs on one OpenMP thread (see :func:`fit`)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return np.asarray(self.model.predict_proba(x))
