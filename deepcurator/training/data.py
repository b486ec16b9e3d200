"""The input pipeline: slices of stored log-mels streamed into the model with ``tf.data``.

Features live in the store as ``features/<id>.npy`` (float16, shape ``(128, F)``). They are
read through a local folder: the store's own files for a local store, a download cache for
S3. Only an index is held in memory (one row per slice: file, first frame, label); each
batch is read from memory-mapped files by parallel ``tf.data`` workers and prefetched, so
the dataset never has to fit in memory.

- Training: every epoch draws a fresh order of all slices across all tracks and, with
  ``random_crops``, a random 30-s window inside each track per slice it holds.
- Evaluation: the fixed, non-overlapping slices the server scores
  (:func:`deepcurator.features.model_input`), in index order.
"""

from __future__ import annotations

import glob
import hashlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from deepcurator import layout
from deepcurator.errors import InputError
from deepcurator.features import N_MELS, SLICE_FRAMES, STORED_DTYPE, n_slices
from deepcurator.store import LocalStore, Store


def default_cache_dir(store: Store) -> Path:
    """A per-store download cache under the system temp folder (kept between runs)."""
    digest = hashlib.sha1(store.describe().encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "deepcurator-cache" / digest


def fetch_features(store: Store, versions: dict[str, str], cache_dir: Path | None, workers: int = 8) -> dict[str, Path]:
    """Local paths of the features of the ids in ``versions`` (id → the store's version tag
    of ``features/<id>.npy``): the store's own files when it is a local folder, otherwise
    copies downloaded (once per version, atomically) into ``cache_dir``. A copy is named
    after its version, so features processed again are fetched again, and replace the old copy.
    Before downloading, the temp files of copies cut short by a killed process are removed."""
    cache = Path(cache_dir or default_cache_dir(store))
    paths: dict[str, Path] = {}
    missing = []
    for youtube_id, tag in versions.items():
        local = store.local_path(layout.feature_key(youtube_id))
        if local is not None:
            paths[youtube_id] = local
            continue
        version = hashlib.sha1(tag.encode()).hexdigest()[:16]
        cached = cache / f"{youtube_id}.{version}.npy"
        paths[youtube_id] = cached
        if not cached.is_file():
            missing.append(youtube_id)
    if missing:
        LocalStore(cache).remove_stale_temps()  # copies are written as the store writes objects
        with ThreadPoolExecutor(workers) as pool:
            jobs = [pool.submit(_fetch, store, i, paths[i]) for i in missing]
            for job in tqdm(jobs, desc="features to local cache", unit="track"):
                job.result()
    return paths


def _fetch(store: Store, youtube_id: str, path: Path) -> None:
    """Download ``youtube_id``'s features to ``path`` and remove its other cached versions."""
    store.get_file(layout.feature_key(youtube_id), path)
    for old in path.parent.glob(f"{glob.escape(youtube_id)}.*.npy"):
        if old != path:
            old.unlink(missing_ok=True)


def build_index(store: Store, tracks: pd.DataFrame, cache_dir: Path | None) -> pd.DataFrame:
    """The usable tracks among ``tracks`` (columns ``youtube_id``, ``label``, any others kept):
    those with stored features of at least one slice, with ``path`` (local file) and
    ``n_frames`` added, in the order of ``tracks``."""
    stored = {layout.feature_id(k): tag for k, tag in store.versions(layout.FEATURES_PREFIX).items()
              if k.endswith(".npy")}
    tracks = tracks[tracks["youtube_id"].isin(stored)].reset_index(drop=True)
    if tracks.empty:
        raise InputError(f"no labelled track has features in {store.describe()}/features/ (run `deepcurator process`)")
    paths = fetch_features(store, {i: stored[i] for i in tracks["youtube_id"]}, cache_dir)
    tracks["path"] = [str(paths[i]) for i in tracks["youtube_id"]]
    headers = [npy_layout(Path(p)) for p in tracks["path"]]
    tracks["offset"] = [h[0] for h in headers]
    tracks["n_frames"] = [h[1] for h in headers]
    return tracks[tracks["n_frames"] >= SLICE_FRAMES].reset_index(drop=True)


def npy_layout(path: Path) -> tuple[int, int]:
    """Where a stored log-mel's data starts in its ``.npy`` file (bytes) and its frame count.

    Read once, here, so that the parallel readers map the data directly: ``np.load`` parses
    the header with ``ast``, which is not safe to call from several threads at once in
    CPython 3.11 ("AST constructor recursion depth mismatch").
    """
    try:
        with open(path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            offset = fh.tell()
    except (ValueError, OSError) as exc:
        raise InputError(f"{path.name} is not a readable .npy feature file: {exc}") from None
    if len(shape) != 2 or shape[0] != N_MELS or fortran or dtype != np.dtype(STORED_DTYPE):
        raise InputError(f"{path.name} holds {dtype} {shape}, expected {np.dtype(STORED_DTYPE)} ({N_MELS}, frames)")
    return offset, int(shape[1])


@dataclass(frozen=True)
class SliceItems:
    """The slices of one pass over a split, as parallel arrays of length ``n``."""

    path: np.ndarray   # str, the track's .npy file
    offset: np.ndarray  # int64, bytes before the data in that file
    n_frames: np.ndarray  # int64, frames of the track
    start: np.ndarray  # int64, first frame of the window
    label: np.ndarray  # float32, 0/1
    track: np.ndarray  # int64, row of the track in the index

    def __len__(self) -> int:
        return len(self.path)

    def windows(self) -> zip:
        """``(path, offset, n_frames, start)`` per slice: the arguments of :func:`read_window`."""
        return zip(self.path, self.offset, self.n_frames, self.start, strict=True)


def fixed_slices(index: pd.DataFrame) -> SliceItems:
    """Every non-overlapping slice of every track in ``index``, in order (the server's slices)."""
    counts = np.array([n_slices(f) for f in index["n_frames"]], dtype=np.int64)
    track = np.repeat(np.arange(len(index)), counts)
    start = np.concatenate([np.arange(c) * SLICE_FRAMES for c in counts]) if len(counts) else np.zeros(0, np.int64)
    return SliceItems(index["path"].to_numpy(str)[track], index["offset"].to_numpy(np.int64)[track],
                      index["n_frames"].to_numpy(np.int64)[track], start.astype(np.int64),
                      index["label"].to_numpy(np.float32)[track], track)


def training_slices(index: pd.DataFrame, epoch: int, seed: int, random_crops: bool) -> SliceItems:
    """One epoch's slices, shuffled across tracks; with ``random_crops`` each track gives as
    many windows as it has fixed slices, each at a random frame. Depends only on
    (index, epoch, seed), so a resumed run sees the same epochs as an uninterrupted one."""
    rng = np.random.default_rng([seed, epoch])
    items = fixed_slices(index)
    start = items.start
    if random_crops:
        last = items.n_frames - SLICE_FRAMES
        start = (rng.random(len(items)) * (last + 1)).astype(np.int64)
    order = rng.permutation(len(items))
    return SliceItems(items.path[order], items.offset[order], items.n_frames[order], start[order],
                      items.label[order], items.track[order])


def read_window(path: bytes | str, offset: int, n_frames: int, start: int) -> np.ndarray:
    """The model input for one window: float32 ``(128, 1291, 1)`` dB values, read from a
    memory-mapped ``.npy`` whose layout :func:`npy_layout` gave (only the window's bytes
    are touched)."""
    S = np.memmap(path.decode() if isinstance(path, bytes) else path, dtype=STORED_DTYPE, mode="r",
                  offset=int(offset), shape=(N_MELS, int(n_frames)))
    return np.asarray(S[:, start:start + SLICE_FRAMES], dtype=np.float32)[..., None]


def make_dataset(items: SliceItems, batch_size: int, training: bool) -> Any:  # -> tf.data.Dataset
    """Batches ``(x, y)``: x float32 ``(batch, 128, 1291, 1)``, y float32 ``(batch, 1)``.

    Reads run in parallel (``AUTOTUNE``) and batches are prefetched. Training drops the
    last partial batch; evaluation keeps every slice, in order.
    """
    import tensorflow as tf

    def load(path: tf.Tensor, offset: tf.Tensor, n_frames: tf.Tensor, start: tf.Tensor,
             label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.numpy_function(read_window, [path, offset, n_frames, start], tf.float32, stateful=False)
        x.set_shape((N_MELS, SLICE_FRAMES, 1))
        return x, tf.reshape(label, (1,))

    ds = tf.data.Dataset.from_tensor_slices((items.path, items.offset, items.n_frames, items.start, items.label))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training, num_parallel_calls=tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
