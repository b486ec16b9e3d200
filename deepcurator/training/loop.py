"""Training the CNN, top to bottom (in the spirit of nanoGPT's train.py).

1. The run: a new one (splits drawn and written), or the one ``--resume`` names.
2. The data: an index of the stored features; ``tf.data`` streams the slices.
3. The model and its optimizer (Adam, cosine learning-rate decay), on every GPU with
   mixed precision (``MirroredStrategy``), otherwise on the CPU in float32.
4. The loop: one epoch of compiled train steps, then the validation slices are scored;
   the full checkpoint (model + optimizer) and ``state.json`` (history, best epoch) go to
   the store, the best model by validation ROC-AUC is exported as ``model.keras``, and
   training stops early after ``patience`` epochs without improvement.
5. The end: the run is evaluated on its test split (:mod:`deepcurator.training.report`) and
   ``runs/latest`` names it.

A run killed at any point resumes from its last finished epoch: the epoch's data order
depends only on (seed, epoch), the optimizer state is in the checkpoint and the history is
the one ``state.json`` committed, so the resumed run records each epoch once.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from deepcurator import runs
from deepcurator.config import Config, TrainConfig, from_dict
from deepcurator.training.data import build_index, fixed_slices, make_dataset, training_slices
from deepcurator.errors import InputError
from deepcurator.training.evaluation import level_metrics, level_scores, predict
from deepcurator.scratch import scratch_dir
from deepcurator.training.splits import class_balance, make_splits, track_groups
from deepcurator.store import Store


def distribution() -> Any:  # -> tf.distribute.Strategy
    """Every local GPU with mixed precision when there is one, else the default (CPU) strategy."""
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return tf.distribute.MirroredStrategy()
    keras.mixed_precision.set_global_policy("float32")
    return tf.distribute.get_strategy()


def read_labels(store: Store) -> pd.DataFrame:
    """``labels.csv`` from the store: ``youtube_id, label``."""
    if not store.exists("labels.csv"):
        raise InputError(f"labels.csv is not in {store.describe()} (run `deepcurator labels`)")
    labels = pd.read_csv(io.BytesIO(store.get_bytes("labels.csv")), dtype={"youtube_id": str})
    if not {"youtube_id", "label"} <= set(labels.columns):
        raise InputError("labels.csv needs the columns youtube_id,label")
    return labels[["youtube_id", "label"]].astype({"label": int})


def split_groups(store: Store, split_by: str) -> pd.Series | None:
    """``youtube_id`` -> group for ``train.split_by`` (None for ``track``), from the
    ``scores.csv`` that ``deepcurator labels`` wrote (every column of the dataset)."""
    if split_by == "track":
        return None
    if not store.exists("scores.csv"):
        raise InputError(f"train.split_by={split_by} needs scores.csv in {store.describe()} (run `deepcurator labels`)")
    rows = pd.read_csv(io.BytesIO(store.get_bytes("scores.csv")), dtype={"youtube_id": str}, low_memory=False)
    return track_groups(rows.dropna(subset=["youtube_id"]), split_by)


def run_train_config(store: Store, run_id: str) -> TrainConfig:
    """The ``train:`` section a run was started with (its stored ``config.yml``)."""
    return from_dict({"train": yaml.safe_load(store.get_bytes(runs.key(run_id, "config.yml")))["train"]}).train


def read_splits(store: Store, run_id: str) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(store.get_bytes(runs.key(run_id, "splits.csv"))), dtype={"youtube_id": str})


def export_model(model: Any, width: float, path: Path) -> None:
    """Save ``model``'s weights in a float32 copy without optimizer: the served ``model.keras``."""
    import keras

    from deepcurator.training.model import build_model

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clean = build_model(width)
    finally:
        keras.config.set_dtype_policy(policy)
    clean.set_weights(model.get_weights())
    clean.save(path)


def make_train_step(model: Any, strategy: Any, global_batch: int) -> Any:
    """A compiled step: ``step(x, y)`` → (mean loss, correct predictions) of one global batch,
    split across the strategy's replicas; the model's optimizer (a LossScaleOptimizer around
    Adam under mixed precision) applies the gradients."""
    import keras
    import tensorflow as tf

    optimizer = model.optimizer

    @tf.function(jit_compile=False)  # XLA made CPU training 7x slower here
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            with tf.GradientTape() as tape:
                p = model(x, training=True)
                loss = tf.reduce_sum(keras.losses.binary_crossentropy(y, p)) / global_batch
                scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            correct = tf.reduce_sum(tf.cast(tf.equal(p >= 0.5, y >= 0.5), tf.float32))
            return loss, correct

        loss, correct = strategy.run(step, args=(x, y))
        return strategy.reduce("SUM", loss, axis=None), strategy.reduce("SUM", correct, axis=None)

    return train_step


def log_scalars(writer: Any, step: int, values: dict[str, float]) -> None:
    """Write TensorBoard scalars with TensorFlow's own summary op (the ``tensorboard`` package
    is only needed to view them: ``tensorboard --logdir runs/<run_id>/tensorboard``)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.write(name, tf.constant(value, tf.float32), metadata=metadata)
    writer.flush()


def binary_cross_entropy(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def train(cfg: Config, store: Store, run_id: str | None = None, resume: str | None = None) -> str:
    """Train (or resume, ``resume`` = a run id or ``"auto"`` for the newest unfinished run)
    and evaluate a run; returns its id."""
    import keras
    import tensorflow as tf

    from deepcurator.training import calibration

    from deepcurator.training import report
    from deepcurator.training.model import build_model

    # 1. The run ---------------------------------------------------------------------------
    if resume:
        run_id = runs.latest_unfinished(store) if resume == "auto" else runs.resolve(store, resume)
        tc = run_train_config(store, run_id)
        splits = read_splits(store, run_id)
        state = runs.read_state(store, run_id)
        print(f"train: resuming run {run_id} after epoch {state['epoch'] if state else 0}")
    else:
        run_id = run_id or runs.new_run_id()
        if store.exists(runs.key(run_id, "config.yml")):
            raise InputError(f"run {run_id} already exists; pass --resume {run_id} to continue it")
        tc, state, splits = cfg.train, None, None
    scratch = scratch_dir("run")  # removed on exit, error or not; after a kill -9, by the next start
    work = Path(scratch.name)
    cache_dir = Path(cfg.train.cache_dir) if cfg.train.cache_dir else None

    # 2. The data --------------------------------------------------------------------------
    if splits is None:
        usable = build_index(store, read_labels(store), cache_dir)
        splits = make_splits(usable[["youtube_id", "label"]], tc.val_fraction, tc.test_fraction, tc.seed,
                             groups=split_groups(store, tc.split_by))
        store.put_bytes(runs.key(run_id, "splits.csv"), splits.to_csv(index=False).encode())
        store.put_bytes(runs.key(run_id, "config.yml"), yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
    index = build_index(store, splits, cache_dir)
    train_index = index[index["split"] == "train"].reset_index(drop=True)
    val_index = index[index["split"] == "val"].reset_index(drop=True)
    val_items = fixed_slices(val_index)
    balance = class_balance(splits)
    print("train: tracks per split (good/not-good): " + ", ".join(
        f"{k} {v['tracks']} ({v['good']}/{v['not_good']})" for k, v in balance.items()))

    # 3. Model and optimizer ---------------------------------------------------------------
    strategy = distribution()
    global_batch = tc.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = len(fixed_slices(train_index)) // global_batch
    if steps_per_epoch == 0:
        raise InputError(f"the train split has fewer slices than one batch ({global_batch})")
    keras.utils.set_random_seed(tc.seed + (state["epoch"] if state else 0))
    with strategy.scope():
        if state:
            ckpt = work / state["last"]
            store.get_file(runs.key(run_id, state["last"]), ckpt)
            model = keras.saving.load_model(ckpt)
        else:
            model = build_model(tc.width)
            lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=tc.epochs * steps_per_epoch,
                                                        alpha=tc.final_lr_fraction)
            model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy", jit_compile=False)
    train_step = make_train_step(model, strategy, global_batch)

    # 4. The loop --------------------------------------------------------------------------
    state = state or {"run_id": run_id, "epoch": 0, "history": [], "best_epoch": None, "best_val_roc_auc": None,
                      "bad_epochs": 0, "last": None, "best": None, "finished": False,
                      "steps_per_epoch": steps_per_epoch, "global_batch": global_batch}
    writer = tf.summary.create_file_writer(str(work / "tensorboard"))
    for epoch in range(state["epoch"] + 1, tc.epochs + 1):
        if state["bad_epochs"] >= tc.patience:
            break
        started = time.monotonic()
        items = training_slices(train_index, epoch, tc.seed, tc.random_crops)
        batches = strategy.experimental_distribute_dataset(make_dataset(items, global_batch, training=True))
        loss_sum = correct = 0.0
        for x, y in tqdm(batches, total=steps_per_epoch, desc=f"epoch {epoch}/{tc.epochs}", unit="batch"):
            loss, right = train_step(x, y)
            loss_sum, correct = loss_sum + float(loss), correct + float(right)

        val_p = predict(model, val_items, global_batch)
        val = level_metrics(level_scores(val_p, val_items, val_index))
        record = {"epoch": epoch, "loss": loss_sum / steps_per_epoch, "accuracy": correct / (steps_per_epoch * global_batch),
                  "val_loss": binary_cross_entropy(val_items.label, val_p),
                  "val_accuracy": val["slice"]["accuracy"], "val_roc_auc": val["slice"]["roc_auc"],
                  "val_track_roc_auc": val["track"]["roc_auc"],
                  "learning_rate": float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)),
                  "seconds": round(time.monotonic() - started, 3)}
        log_scalars(writer, epoch, {k: v for k, v in record.items() if k != "epoch" and v is not None})

        score = record["val_roc_auc"] or 0.0
        improved = state["best_val_roc_auc"] is None or score > state["best_val_roc_auc"]
        name = f"checkpoint/epoch-{epoch:03d}.keras"
        (work / "checkpoint").mkdir(exist_ok=True)
        model.save(work / name)
        store.put_file(runs.key(run_id, name), work / name)
        stale = {state["last"], state["best"]}
        state.update(epoch=epoch, history=[*state["history"], record], last=name,
                     bad_epochs=0 if improved else state["bad_epochs"] + 1)
        if improved:
            state.update(best=name, best_epoch=epoch, best_val_roc_auc=score)
        runs.write_json(store, runs.key(run_id, "state.json"), state)  # the commit point of the epoch
        for old in stale - {state["last"], state["best"], None}:
            store.delete(runs.key(run_id, old))
        if improved:
            export_model(model, tc.width, work / "model.keras")
            store.put_file(runs.key(run_id, "model.keras"), work / "model.keras")
        runs.upload_tree(store, run_id, work, "tensorboard")
        print(f"epoch {epoch}: loss {record['loss']:.4f} acc {record['accuracy']:.3f} | val loss {record['val_loss']:.4f} "
              f"ROC-AUC slice {_fmt(record['val_roc_auc'])} track {_fmt(record['val_track_roc_auc'])}"
              f"{' (best)' if improved else ''} | lr {record['learning_rate']:.2e} | {record['seconds']:.1f} s", flush=True)
    if state["bad_epochs"] >= tc.patience:
        print(f"train: stopped early, no improvement of validation ROC-AUC for {tc.patience} epochs")

    # 5. The end ---------------------------------------------------------------------------
    best = work / "best.keras"
    store.get_file(runs.key(run_id, state["best"]), best)
    best_model = keras.saving.load_model(best, compile=False)
    a, c = calibration.platt(predict(best_model, val_items, global_batch), val_items.label)
    calibration.fold_into_output(best_model, a, c)
    state["calibration"] = {"method": "Platt scaling on the validation slices", "a": a, "c": c}
    runs.write_json(store, runs.key(run_id, "state.json"), state)  # the report reads it
    export_model(best_model, tc.width, work / "model.keras")
    store.put_file(runs.key(run_id, "model.keras"), work / "model.keras")
    metrics = report.evaluate_run(cfg, store, run_id)
    state["finished"] = True
    runs.write_json(store, runs.key(run_id, "state.json"), state)
    store.put_bytes(runs.LATEST, f"{run_id}\n".encode())
    scratch.cleanup()
    test = metrics["test"]["track"]
    print(f"train: run {run_id} finished (best epoch {state['best_epoch']}); test tracks ROC-AUC {_fmt(test['roc_auc'])}, "
          f"accuracy {_fmt(test['accuracy'])} -> {store.describe()}/runs/{run_id}/")
    return run_id


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
