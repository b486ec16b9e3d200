"""The original project's way of serving, for the side-by-side benchmark only: per request,
librosa.load (resampy's kaiser_fast) + melspectrogram + ``model.predict``, in a tiny Flask app.

Run by bench_serve.py as ``gunicorn -w 2 --pythonpath bench 'original_app:app'`` with
``BENCH_MODEL=path/to/model.keras``.
"""

from __future__ import annotations

import os
import tempfile

import keras
import librosa
import numpy as np
from flask import Flask, Response, jsonify, request

model = keras.saving.load_model(os.environ["BENCH_MODEL"], compile=False)
app = Flask(__name__)


@app.post("/predict")
def predict() -> Response:
    with tempfile.NamedTemporaryFile(suffix=".mp3") as tmp:
        request.files["audio"].save(tmp.name)
        y, sr = librosa.load(tmp.name, sr=22050, res_type="kaiser_fast")
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=128), ref=1.0, amin=1e-10, top_db=None)
    n = S.shape[1] // 1291
    x = S[:, : n * 1291].reshape(128, n, 1291).transpose(1, 0, 2)[..., None].astype(np.float32)
    scores = model.predict(x, verbose=0).ravel()
    return jsonify({"score": round(float(scores.mean()) * 100, 2)})


@app.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})
