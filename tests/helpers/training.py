"""Small real-audio features for the training tests, made by the project's own feature code.

Two classes with spectra a CNN (and the baseline) can tell apart: "good" tracks are bright
chords (1.2-1.9 kHz roots) over blue noise, "not-good" ones dark chords (70-140 Hz roots)
over brown noise, so every band, not only the chord's, tells them apart; 35-70 s each (one
or two slices).
The noise is seeded per track, so the features are the same on every machine.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from deepcurator import audio, features
from deepcurator.store import Store

from tests.helpers.audio import make_audio


def make_features(folder: Path, per_class: int = 8) -> dict[str, tuple[np.ndarray, int]]:
    """``{youtube_id: (stored log-mel float16 (128, F), label)}`` for ``2 × per_class`` tracks."""
    out = {}
    for label in (0, 1):
        for i in range(per_class):
            seconds = 35 + (i * 13) % 36  # 35-70 s: one or two slices
            freq = 1200.0 + 90 * i if label else 70.0 + 9 * i
            path = make_audio(folder / f"{label}_{i}.wav", seconds, sr=22050, channels=1, freq=freq,
                              noise="blue" if label else "brown", seed=1 + 100 * label + i)
            S = features.quantize(features.logmel(audio.decode(path)))
            out[f"trk{label}{i:02d}x"] = (S, label)
    return out


def put_dataset(store: Store, feats: dict[str, tuple[np.ndarray, int]]) -> None:
    """Write ``features/<id>.npy`` and ``labels.csv`` into ``store``."""
    rows = ["youtube_id,label"]
    for youtube_id, (S, label) in feats.items():
        buf = io.BytesIO()
        np.save(buf, S)
        store.put_bytes(f"features/{youtube_id}.npy", buf.getvalue())
        rows.append(f"{youtube_id},{label}")
    store.put_bytes("labels.csv", ("\n".join(rows) + "\n").encode())
