"""Training throughput: the tf.data pipeline from the store vs the same model on in-memory tensors.

(a) pipeline: batches streamed by :func:`deepcurator.training.data.make_dataset` from
    ``features/<id>.npy`` in a local store (random 30-s crops, shuffled across tracks);
(b) in memory: one batch of the same shape already in a tensor, fed to the same compiled
    train step (the upper bound the pipeline is measured against).

Also reports the forward FLOPs per slice (from the layer shapes), the achieved GFLOP/s
(training ≈ 3 × forward) and the peak RSS of the process.

    python bench/bench_train.py --width 1.0 --batch 16 --steps 6
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deepcurator.features import N_MELS, SLICE_FRAMES

if TYPE_CHECKING:
    from deepcurator.store import LocalStore


def forward_flops(model: Any) -> int:
    """Multiply-adds × 2 of the convolutions and dense layers for one slice (the rest is <1 %)."""
    flops = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            flops += 2 * h * w * c_out * kh * kw * c_in
        elif kind == "Dense":
            n_in, n_out = layer.kernel.shape
            flops += 2 * n_in * n_out
    return int(flops)


def make_store(root: Path, tracks: int, frames: int, seed: int = 0) -> LocalStore:
    """A local store with ``tracks`` random float16 log-mels ``(128, frames)`` and labels."""
    from deepcurator.store import LocalStore

    store = LocalStore(root)
    rng = np.random.default_rng(seed)
    rows = ["youtube_id,label"]
    for i in range(tracks):
        S = (rng.normal(-40, 15, size=(N_MELS, frames))).astype(np.float16)
        path = root / "features" / f"t{i:04d}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, S)
        rows.append(f"t{i:04d},{i % 2}")
    store.put_bytes("labels.csv", ("\n".join(rows) + "\n").encode())
    return store


def timed(step: Callable[[Any, Any], tuple[Any, Any]], it: Iterator[tuple[Any, Any]]) -> float:
    """Seconds for one training step on the next batch of iterator ``it`` (read included)."""
    started = time.perf_counter()
    x, y = next(it)
    loss, _ = step(x, y)
    float(loss)  # wait for the step to finish
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6,
                        help="timed steps per mode, alternating (after 2 warm-up steps each)")
    parser.add_argument("--tracks", type=int, default=24)
    args = parser.parse_args()

    import keras
    import pandas as pd
    import tensorflow as tf

    from deepcurator.training.data import build_index, make_dataset, training_slices
    from deepcurator.training.loop import distribution, make_train_step
    from deepcurator.training.model import build_model

    strategy = distribution()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        store = make_store(Path(tmp), args.tracks, frames=10 * SLICE_FRAMES + 100)  # ~5-min tracks
        labels = pd.read_csv(Path(tmp) / "labels.csv", dtype={"youtube_id": str})
        index = build_index(store, labels, None)
        with strategy.scope():
            model = build_model(args.width)
            model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy", jit_compile=False)
        step = make_train_step(model, strategy, args.batch)
        items = training_slices(index, epoch=1, seed=0, random_crops=True)
        pipeline = iter(make_dataset(items, args.batch, training=True).repeat())
        x0, y0 = next(pipeline)
        memory = iter(tf.data.Dataset.from_tensors((tf.identity(x0), tf.identity(y0))).repeat())
        for _ in range(2):  # trace, warm up, let the pipeline's prefetch fill
            timed(step, memory), timed(step, pipeline)
        # Alternate the two modes step by step, so that the load of a shared machine hits both alike.
        times = np.array([(timed(step, memory), timed(step, pipeline)) for _ in range(args.steps)])
    in_memory, from_store = args.batch / np.median(times, axis=0)
    flops = forward_flops(model)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    device = f"GPU x{strategy.num_replicas_in_sync}" if tf.config.list_physical_devices("GPU") else "CPU"
    print(f"device: {device}, "
          f"width {args.width}, batch {args.batch}, {args.steps} timed steps per mode")
    print(f"(b) in-memory tensors : {in_memory:.2f} slices/s (median step)")
    print(f"(a) tf.data from store: {from_store:.2f} slices/s = {100 * from_store / in_memory:.0f} % of (b)")
    print(f"forward FLOPs per slice: {flops / 1e9:.3f} GFLOP; training (~3x forward) achieved "
          f"{3 * flops * from_store / 1e9:.1f} GFLOP/s (pipeline), "
          f"{3 * flops * in_memory / 1e9:.1f} GFLOP/s (in memory)")
    print(f"peak RSS of this process: {peak_gb:.2f} GiB")


if __name__ == "__main__":
    main()
