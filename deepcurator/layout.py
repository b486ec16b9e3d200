"""The store's key layout: the one place that names where each stage's output lives.

::

    labels.csv                 youtube_id,label                   (labels)
    scores.csv                 every Discogs row, its score, status (labels)
    labels_scores.png          the histogram of scores             (labels)
    audio/<id>.<ext>           the downloaded track (mp3)          (download)
    feature_spec.json          the feature definition of features/ (process)
    features/<id>.npy          float16 log-mel (n_mels, frames)    (process)
    failures/<stage>.jsonl     one line per failed item            (every per-item stage)
    runs/<run_id>/...          a training run (deepcurator.runs)   (train, evaluate)
    runs/latest                the id of the newest finished run   (train)
    cluster-check/<...>        a probe Dask workers must read, removed at once (download, process)

Keys are ``/``-separated and the same on every store backend.
"""

from __future__ import annotations

LABELS = "labels.csv"
SCORES = "scores.csv"
SCORES_PLOT = "labels_scores.png"
LABELS_REPORT = "labels_report.json"  # the label rule, its class balance and the data source
AUDIO_PREFIX = "audio/"
FEATURES_PREFIX = "features/"
FEATURE_SPEC = "feature_spec.json"
FAILURES_PREFIX = "failures/"
RUNS_PREFIX = "runs/"
LATEST_RUN = "runs/latest"
FEATURES_SUFFIX = ".npy"
CLUSTER_CHECK_PREFIX = "cluster-check/"


def audio_key(item_id: str, suffix: str = ".mp3") -> str:
    """``audio/<id><suffix>``; ``suffix`` includes its dot."""
    return f"{AUDIO_PREFIX}{item_id}{suffix}"


def audio_id(key: str) -> str:
    """The id of an ``audio/<id>.<ext>`` key."""
    return key[len(AUDIO_PREFIX):].rsplit(".", 1)[0]


def feature_key(item_id: str) -> str:
    """``features/<id>.npy``."""
    return f"{FEATURES_PREFIX}{item_id}{FEATURES_SUFFIX}"


def feature_id(key: str) -> str | None:
    """The id of a ``features/<id>.npy`` key, or None for any other key."""
    if key.startswith(FEATURES_PREFIX) and key.endswith(FEATURES_SUFFIX):
        return key[len(FEATURES_PREFIX):-len(FEATURES_SUFFIX)]
    return None


def failures_key(stage: str) -> str:
    """``failures/<stage>.jsonl``."""
    return f"{FAILURES_PREFIX}{stage}.jsonl"


def run_key(run_id: str, name: str) -> str:
    """``runs/<run_id>/<name>``."""
    return f"{RUNS_PREFIX}{run_id}/{name}"
