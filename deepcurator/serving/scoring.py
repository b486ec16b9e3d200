"""Scoring with a trained model: where the model comes from, and how slices become a score.

- :func:`resolve_model` turns ``serve.model`` into a local ``.keras`` file and a run id:
  ``runs/latest`` (the pointer the trainer writes in the store), ``runs/<run_id>``, a local
  ``.keras`` path, or an ``http(s)://`` / ``s3://`` URL (downloaded once into a cache folder).
  When ``serve.model`` is left at its default and the store has no finished run, the exported
  model in ``model/`` (``deepcurator export``; :mod:`deepcurator.shipped`) is used instead.
- :class:`Scorer` loads the model once, freezes it into a constant-folded graph (a compiled
  ``tf.function``: ``model.predict`` costs about 130 ms more per call), warms it with one call
  and runs one inference at a time under a lock (Keras models are not thread-safe).
- :func:`score_file` scores a file slice by slice as it is decoded (:mod:`deepcurator.stream`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepcurator import features, runs, shipped
from deepcurator.config import Config
from deepcurator.errors import ConfigError, InputError, StoreError, TooLong
from deepcurator.features import N_MELS, SLICE_FRAMES
from deepcurator.scores import AGGREGATIONS, aggregate, label_of
from deepcurator.spec import SPEC, FeatureSpec, check_same, read_from_model
from deepcurator.stream import SLICE_SAMPLES

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_HASH_GOT = re.compile(r"but got ([0-9a-f]{64})")
HOW_TO_GET_ONE = "train one with `deepcurator train` (or run `make demo`), or set serve.model to a .keras file or URL"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ModelSource:
    """A model file on this machine, the run it came from, what that run was trained on (None:
    not known) and where it was found (``runs/latest in the store data``, a path, a URL)."""

    path: Path
    run_id: str
    trained_on: str | None = None
    synthetic: bool | None = None
    origin: str = ""


def cache_dir(cfg: Config) -> Path:
    """Where downloaded models are kept: ``serve.model_cache_dir`` or ``~/.cache/deepcurator/models``."""
    if cfg.serve.model_cache_dir:
        return Path(cfg.serve.model_cache_dir)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "deepcurator" / "models"


def _cached(cfg: Config, name: str, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return cache_dir(cfg) / f"{digest}-{name}"


def pinned_sha256(cfg: Config, spec: str | None = None) -> str | None:
    """The sha256 the model must have: a ``#sha256=<hex>`` suffix on the model's URL, else
    ``serve.model_sha256``; None when neither pins it. Both given and different, or not 64 hex
    digits: :class:`ConfigError`."""
    spec = (spec or cfg.serve.model).strip()
    fragment = urllib.parse.urlparse(spec).fragment
    from_url = fragment.removeprefix("sha256=").lower() if fragment.startswith("sha256=") else None
    from_cfg = (cfg.serve.model_sha256 or "").strip().lower() or None
    for where, value in (("the #sha256= suffix of serve.model", from_url), ("serve.model_sha256", from_cfg)):
        if value is not None and not _SHA256.fullmatch(value):
            raise ConfigError(f"{where} must be 64 hexadecimal digits (a sha256), got {value!r}")
    if from_url and from_cfg and from_url != from_cfg:
        raise ConfigError(f"serve.model's #sha256= suffix ({from_url[:12]}…) and serve.model_sha256 "
                          f"({from_cfg[:12]}…) disagree")
    return from_url or from_cfg


def check_pinned(path: Path, sha256: str | None, what: str) -> None:
    """Refuse (:class:`ConfigError`, one line) the model file ``path`` unless its sha256 is
    ``sha256`` (None: not pinned, nothing to check)."""
    if sha256 is None:
        return
    found = shipped.file_sha256(path, digits=64)
    if found != sha256:
        raise ConfigError(f"the model {what} has sha256 {found}, not the pinned {sha256} (serve.model_sha256 or "
                          "the URL's #sha256=): refusing it; a changed or damaged file is never served")


def _download_url(cfg: Config, url: str, sha256: str | None = None) -> Path:
    """Fetch an http(s) or s3 URL into the cache, once, and check it against ``sha256``.

    http(s) goes through pooch: a progress bar, a temp file renamed only once whole and its
    hash checked (a killed download restarts cleanly), a cached copy reused when it still
    has the pinned hash and fetched again when it does not."""
    from deepcurator.store import S3Store

    parsed = urllib.parse.urlparse(url)
    plain = urllib.parse.urlunparse(parsed._replace(fragment=""))
    name = Path(parsed.path).name or "model.keras"
    dest = _cached(cfg, name, plain)
    try:
        if parsed.scheme == "s3":
            if dest.is_file() and (sha256 is None or shipped.file_sha256(dest, digits=64) == sha256):
                return dest
            S3Store(dataclasses.replace(cfg.s3, bucket=parsed.netloc, prefix="")).get_file(parsed.path.lstrip("/"),
                                                                                             dest)
            try:
                check_pinned(dest, sha256, f"downloaded from {plain}")
            except ConfigError:
                dest.unlink(missing_ok=True)
                raise
            return dest
        import pooch
        import requests

        downloader = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), chunk_size=1 << 20, timeout=60)
        try:
            return Path(pooch.retrieve(plain, known_hash=f"sha256:{sha256}" if sha256 else None, fname=dest.name,
                                       path=dest.parent, downloader=downloader))
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "error"
            raise ConfigError(f"serve.model {plain}: HTTP {status}; {HOW_TO_GET_ONE}") from None
        except ValueError as exc:  # pooch: the download's hash is not the pinned one
            found = _HASH_GOT.search(str(exc))
            raise ConfigError(f"the model downloaded from {plain} has sha256 {found.group(1) if found else '?'}, not "
                              f"the pinned {sha256} (serve.model_sha256 or the URL's #sha256=): refusing it; a "
                              "changed or damaged file is never served") from None
    except StoreError as exc:
        raise ConfigError(f"serve.model {plain}: {exc}; {HOW_TO_GET_ONE}") from None
    except OSError as exc:  # requests' errors are OSErrors
        raise ConfigError(f"serve.model {plain}: cannot download ({type(exc).__name__}); {HOW_TO_GET_ONE}") from None


def _from_store(cfg: Config, spec: str, fallback: bool = False) -> ModelSource:
    """``runs/latest`` or ``runs/<run_id>`` in the configured store; with ``fallback``, the
    exported ``model/model.keras`` when the store has no finished run."""
    from deepcurator.store import open_store

    store = open_store(cfg)
    run_id = spec.split("/", 1)[1].strip("/")
    try:
        if run_id == "latest":
            latest = runs.read_latest(store)
            if latest is None:
                exported = shipped.model_file() if fallback else None
                if exported is not None:
                    return _with_identity(ModelSource(
                        exported, exported.parent.name, origin=f"{exported} (the store {store.describe()} has no "
                                                               "finished run)"))
                nor = f" and there is no exported {shipped.MODEL_DIR}/{shipped.MODEL_FILE}" if fallback else ""
                raise ConfigError(f"no model: {runs.LATEST} is not in the store {store.describe()}{nor}; "
                                  f"{HOW_TO_GET_ONE}")
            run_id = latest
        key = runs.key(run_id, runs.MODEL)
        if not store.exists(key):
            raise ConfigError(f"no model: {key} is not in the store {store.describe()}; {HOW_TO_GET_ONE}")
        local = store.local_path(key)
        if local is None:
            local = _cached(cfg, f"{run_id}.keras", f"{store.describe()}/{key}")
            if not local.is_file():
                store.get_file(key, local)
        trained_on, synthetic = shipped.trained_on(runs.read_config(store, run_id))
    except StoreError as exc:
        raise ConfigError(f"no model: {exc}; {HOW_TO_GET_ONE}") from None
    return ModelSource(local, run_id, trained_on, synthetic, origin=f"runs/{run_id} in the store {store.describe()}")


def _with_identity(source: ModelSource) -> ModelSource:
    """``source`` with the run id and data source an export recorded beside the file
    (``model.json``), when there is one."""
    info = shipped.read_model_info(source.path.parent)
    if not info or info.get("model_file", shipped.MODEL_FILE) != source.path.name:
        return source
    return dataclasses.replace(source, run_id=str(info.get("run_id") or source.run_id),
                               trained_on=info.get("trained_on"), synthetic=info.get("synthetic_demo"))


def resolve_model(cfg: Config, spec: str | None = None) -> ModelSource:
    """The model file named by ``spec`` (default ``serve.model``), fetched to this machine.

    Raises :class:`ConfigError` with a one-line message saying how to get a model when
    there is none.
    """
    # The exported model/ stands in only for the default: a model the user named is that model.
    fallback = spec is None and cfg.origin("serve.model") == "default"
    spec = (spec or cfg.serve.model).strip()
    scheme = urllib.parse.urlparse(spec).scheme
    if scheme in ("http", "https", "s3"):
        path = _download_url(cfg, spec, pinned_sha256(cfg, spec))
        return ModelSource(path, Path(urllib.parse.urlparse(spec).path).stem, origin=spec)
    if spec.startswith("runs/"):
        return _from_store(cfg, spec, fallback=fallback and spec == runs.LATEST)
    path = Path(spec).expanduser()
    if path.suffix == ".keras":
        if not path.is_file():
            raise ConfigError(f"no model: {path} does not exist; {HOW_TO_GET_ONE}")
        run_id = path.parent.name if path.name == "model.keras" and path.parent.name else path.stem
        return _with_identity(ModelSource(path, run_id, origin=str(path)))
    raise ConfigError(
        f"serve.model {spec!r} is not runs/latest, runs/<run_id>, a .keras file or an http(s)/s3 URL; {HOW_TO_GET_ONE}"
    )


def configure_threads(n: int) -> None:
    """Threads for scoring: TensorFlow's intra-op threads ``n`` (0: its default, one per
    core), and one BLAS thread for the features in this process. The features of a slice
    are small and the cores are busy with the decoder and the CNN: OpenBLAS's spinning worker
    threads cost a third more CPU per request for nothing (measured: bench/RESULTS.md).

    TensorFlow's setting must come before it executes anything; a later call keeps the first.
    """
    import tensorflow as tf
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")
    if n > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # already initialised in this process
            pass


def model_spec(path: Path) -> FeatureSpec:
    """The feature spec inside the model file ``path``, checked against the one in use:
    :class:`~deepcurator.spec.SpecMismatch` (one line naming the differing fields) when it
    differs. A model saved before specs travelled with models has none: it was trained on
    version 1, the spec in use then, and is taken as such."""
    found = read_from_model(path)
    if found is None:
        logger.warning("the model %s carries no feature spec (saved before they did): taken as version %d",
                       path.name, SPEC.version)
        return SPEC
    check_same(found, f"the model {path.name}")
    return found


class Scorer:
    """A loaded model that scores slices, one inference at a time.

    ``predict(x)`` takes model input ``(n, 128, 1291, 1)`` float32 dB values and returns the
    ``n`` slice probabilities (float32, shape ``(n,)``).
    """

    def __init__(self, source: ModelSource, aggregation: str = "mean", top_k: int = 5, tf_threads: int = 0) -> None:
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"config key 'serve.aggregation' must be one of {', '.join(AGGREGATIONS)}")
        self.feature_spec = model_spec(source.path)  # refused before TensorFlow's start-up costs anything

        import keras
        import tensorflow as tf
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        configure_threads(tf_threads)
        started = time.monotonic()
        self.run_id = source.run_id
        self.path = source.path
        self.origin = source.origin or str(source.path)
        self.info = shipped.ModelInfo(source.run_id, shipped.file_sha256(source.path),
                                      source.trained_on or UNKNOWN, source.synthetic)
        self.aggregation = aggregation
        self.top_k = top_k
        try:
            model = keras.saving.load_model(source.path, compile=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file becomes one line
            raise ConfigError(f"cannot load the model {source.path}: {type(exc).__name__}: {exc}") from None
        spec = tf.TensorSpec((None, N_MELS, SLICE_FRAMES, 1), tf.float32)
        concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        self._fn = convert_variables_to_constants_v2(concrete)
        self._tf = tf
        self._lock = threading.Lock()
        # Warm-up, once: the whole path on 30 s of silence (builds the mel filterbank and the
        # FFT plan, allocates the graph's buffers), so the first request is not slower.
        self.predict(features.model_input(features.logmel(np.zeros(SLICE_SAMPLES, np.float32))))
        self.load_seconds = time.monotonic() - started

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of "good" for a batch of slices: ``(n, 128, 1291, 1)`` → ``(n,)``."""
        if x.ndim != 4 or x.shape[1:] != (N_MELS, SLICE_FRAMES, 1):
            raise ValueError(f"model input must be (n, {N_MELS}, {SLICE_FRAMES}, 1), got {x.shape}")
        with self._lock:
            out = self._fn(self._tf.constant(x, dtype=self._tf.float32))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def track_probability(self, slice_scores: np.ndarray) -> float:
        """The track's probability by the configured aggregation."""
        return aggregate(slice_scores, self.aggregation, self.top_k)


def load_scorer(cfg: Config, model: str | None = None) -> Scorer:
    """Resolve ``model`` (default ``serve.model``) and load it with the configured aggregation."""
    s = cfg.serve
    source = resolve_model(cfg, model)
    check_pinned(source.path, pinned_sha256(cfg, model), str(source.path))  # on every start, whatever the source
    return Scorer(source, s.aggregation, s.top_k, s.tf_threads)


class TooShort(InputError):
    """The audio holds no whole 30-s slice."""


@dataclass(frozen=True)
class Timings:
    """Where a track's scoring time went (wall-clock seconds): the decoder's run, the slices'
    log-mels, and the model's calls. Decoding and features overlap with inference, so they
    do not add up to the request's time."""

    decode_s: float = 0.0
    features_s: float = 0.0
    inference_s: float = 0.0


@dataclass(frozen=True)
class TrackScore:
    """A scored track: ``score`` 0–100, its label, the decoded duration (seconds), whether
    only the first ``max_duration_s`` were scored, and each slice's (start s, end s, score 0–100)."""

    score: float
    label: str
    duration_s: float
    truncated: bool
    slices: list[tuple[float, float, float]]
    timings: Timings = dataclasses.field(default_factory=Timings, compare=False)

    def to_json(self, run_id: str, model: dict[str, object] | None = None) -> dict[str, object]:
        """The /predict answer (scores with two decimals); ``model``: which model scored it."""
        answer: dict[str, object] = {
            "score": round(self.score, 2), "label": self.label, "duration_s": round(self.duration_s, 2),
            "run_id": run_id, "truncated": self.truncated,
            "slices": [{"start": round(a, 2), "end": round(b, 2), "score": round(s, 2)} for a, b, s in self.slices],
        }
        if model is not None:
            answer["model"] = model
        return answer


def _decode_limit(max_duration_s: float | None, over_duration: str) -> float | None:
    """How far to decode: "reject" decodes a little past the limit, to tell an over-long
    track from one at the limit."""
    if max_duration_s is None:
        return None
    return max_duration_s if over_duration == "truncate" else max_duration_s + 1.0


def _over(duration_s: float, max_duration_s: float | None, over_duration: str) -> bool:
    return max_duration_s is not None and over_duration == "reject" and duration_s > max_duration_s


def _checked(duration_s: float, n_slices: int, max_duration_s: float | None, over_duration: str) -> bool:
    """Whether only the start was scored; :class:`TooLong` or :class:`TooShort` when the
    track cannot be scored."""
    if _over(duration_s, max_duration_s, over_duration):
        raise TooLong(f"audio is longer than the {max_duration_s:.0f} s limit")
    if not n_slices:
        raise TooShort(f"audio is {duration_s:.1f} s long; at least 30 s (one slice) is needed")
    return (max_duration_s is not None and over_duration == "truncate"
            and duration_s >= max_duration_s - 0.01)


def _track_score(scorer: Scorer, probs: list[float] | np.ndarray, duration_s: float, truncated: bool,
                 timings: Timings) -> TrackScore:
    from deepcurator.stream import slice_times

    p = np.asarray(probs, dtype=np.float32)
    score = 100.0 * scorer.track_probability(p)
    slices = [(a, b, 100.0 * float(s)) for (a, b), s in zip(slice_times(len(p)), p, strict=True)]
    return TrackScore(score, label_of(score), duration_s, truncated, slices, timings)


def score_file(scorer: Scorer, path: str | os.PathLike[str], *, decode_timeout: float | None = 30.0,
               max_duration_s: float | None = None, over_duration: str = "reject") -> TrackScore:
    """Decode, featurise and score ``path``, each slice scored as soon as it is decoded.

    Over ``max_duration_s`` seconds: :class:`TooLong` (``over_duration="reject"``), or only the
    first ``max_duration_s`` seconds are scored (``"truncate"``). Under one slice:
    :class:`TooShort`. Unreadable input or a decode past ``decode_timeout``: ``DecodeError``.
    """
    from deepcurator.stream import SliceStream

    stream = SliceStream(path, timeout=decode_timeout, max_duration=_decode_limit(max_duration_s, over_duration))
    probs = []
    inference = 0.0
    for x in stream:
        started = time.perf_counter()
        probs.append(scorer.predict(x[None])[0])
        inference += time.perf_counter() - started
        if _over(stream.duration_s, max_duration_s, over_duration):
            break
    truncated = _checked(stream.duration_s, len(probs), max_duration_s, over_duration)
    return _track_score(scorer, probs, stream.duration_s, truncated,
                        Timings(stream.decode_s, stream.features_s, inference))


@dataclass(frozen=True)
class TrackInput:
    """A decoded track as model input, ready to score: its slices ``(n, 128, 1291, 1)``
    float32 (the same values :func:`score_file` feeds the model), duration, whether it was
    cut at ``max_duration_s``, and the decode and feature times. Made in a worker process by
    ``rate`` (:func:`track_input`), scored in the model's process (:func:`score_input`)."""

    slices: np.ndarray
    duration_s: float
    truncated: bool
    decode_s: float
    features_s: float


def track_input(path: str | os.PathLike[str], *, decode_timeout: float | None = 30.0,
                max_duration_s: float | None = None, over_duration: str = "reject") -> TrackInput:
    """Decode and featurise ``path`` without the model (the same limits and errors as
    :func:`score_file`)."""
    from deepcurator.stream import SliceStream

    stream = SliceStream(path, timeout=decode_timeout, max_duration=_decode_limit(max_duration_s, over_duration))
    xs = []
    for x in stream:
        xs.append(x)
        if _over(stream.duration_s, max_duration_s, over_duration):
            break
    truncated = _checked(stream.duration_s, len(xs), max_duration_s, over_duration)
    return TrackInput(np.stack(xs), stream.duration_s, truncated, stream.decode_s, stream.features_s)


def score_input(scorer: Scorer, track: TrackInput) -> TrackScore:
    """Score a :class:`TrackInput` slice by slice (batches of one, as :func:`score_file`, so
    the scores are the server's, bit for bit)."""
    started = time.perf_counter()
    probs = [scorer.predict(x[None])[0] for x in track.slices]
    timings = Timings(track.decode_s, track.features_s, time.perf_counter() - started)
    return _track_score(scorer, probs, track.duration_s, track.truncated, timings)
