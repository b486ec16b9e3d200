"""Training the CNN, top to bottom (in the spirit of nanoGPT's train.py).

:func:`train` reads as its steps:

1. :func:`open_run`: a new run (the store's feature spec checked and recorded), or the one
   ``--resume`` names.
2. :func:`build_data`: splits drawn and written for a new run; an index of the stored
   features; ``tf.data`` streams the slices.
3. :func:`build_model_and_step`: the model and its optimizer (Adam, cosine learning-rate
   decay), on every GPU with mixed precision (``MirroredStrategy``), otherwise on the CPU in
   float32, and the compiled train step.
4. The epoch loop: :func:`run_epoch` (compiled train steps, then the validation slices are
   scored) and :func:`commit_epoch` (the full checkpoint and ``state.json`` go to the store,
   the best model by validation ROC-AUC is exported as ``model.keras``); training stops early
   after ``patience`` epochs without improvement.
5. :func:`calibrate_best`: Platt scaling of the best model on validation, folded into it.
6. The report: the run is evaluated on its test split (:mod:`deepcurator.training.report`),
   then ``runs/latest`` names it, and :class:`TrainResult` goes back to the command.

A run killed at any point resumes from its last finished epoch: the epoch's data order
depends only on (seed, epoch), the optimizer state is in the checkpoint and the history is
the one ``state.json`` committed, so the resumed run records each epoch once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from deepcurator import runs, spec
from deepcurator.config import Config, TrainConfig
from deepcurator.errors import InputError
from deepcurator.scratch import scratch_dir
from deepcurator.store import Store
from deepcurator.training import calibration, report
from deepcurator.training.data import SliceItems, build_index, fixed_slices, make_dataset, training_slices
from deepcurator.training.evaluation import level_metrics, level_scores, predict
from deepcurator.training.model import build_model
from deepcurator.training.splits import class_balance, make_splits, track_groups

logger = logging.getLogger(__name__)


def distribution() -> Any:  # -> tf.distribute.Strategy
    """Every local GPU with mixed precision when there is one, else the default (CPU) strategy."""
    import keras
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        keras.mixed_precision.set_global_policy("mixed_float16")
        return tf.distribute.MirroredStrategy()
    keras.mixed_precision.set_global_policy("float32")
    return tf.distribute.get_strategy()


def split_groups(store: Store, split_by: str) -> pd.Series | None:
    """``youtube_id`` -> group for ``train.split_by`` (None for ``track``), from the
    ``scores.csv`` that ``deepcurator labels`` wrote (every column of the dataset)."""
    if split_by == "track":
        return None
    rows = runs.read_scores(store)
    if rows is None:
        raise InputError(f"train.split_by={split_by} needs scores.csv in {store.describe()} (run `deepcurator labels`)")
    return track_groups(rows.dropna(subset=["youtube_id"]), split_by)


def export_model(model: Any, width: float, path: Path, feature_spec: spec.FeatureSpec = spec.SPEC,
                 head: str = "flatten") -> None:
    """Save ``model``'s weights in a float32 copy without optimizer, with ``feature_spec``
    inside: the served ``model.keras``."""
    import keras

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clean = build_model(width, head=head)
    finally:
        keras.config.set_dtype_policy(policy)
    clean.set_weights(model.get_weights())
    clean.save(path)
    spec.write_into_model(path, feature_spec)


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


@dataclass
class Run:
    """A run being trained: its id and ``train:`` settings, the feature spec of its data, its
    splits (None until drawn) and its committed state (None before the first epoch)."""

    run_id: str
    tc: TrainConfig
    feature_spec: spec.FeatureSpec
    splits: pd.DataFrame | None = None
    state: dict[str, Any] | None = None


@dataclass
class Data:
    """The run's data: the index of stored features per split, and the fixed validation slices."""

    train_index: pd.DataFrame
    val_index: pd.DataFrame
    val_items: SliceItems
    balance: dict[str, dict[str, int]]


@dataclass
class Trainer:
    """The model on its distribution strategy, with its compiled step and batch figures."""

    model: Any
    strategy: Any
    step: Any
    global_batch: int
    steps_per_epoch: int


@dataclass
class TrainResult:
    """What :func:`train` did: the run, its best epoch, whether it stopped early, its metrics."""

    run_id: str
    best_epoch: int
    stopped_early: bool
    metrics: dict[str, Any]
    destination: str
    history: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        """The command's summary line."""
        test = self.metrics["test"]["track"]
        base = self.metrics.get("baseline", {}).get("test", {}).get("track", {})
        return (f"train: run {self.run_id} finished (best epoch {self.best_epoch}"
                f"{', stopped early' if self.stopped_early else ''}); test tracks ROC-AUC {_fmt(test['roc_auc'])} "
                f"(baseline {_fmt(base.get('roc_auc'))}), accuracy {_fmt(test['accuracy'])} -> {self.destination}")


def open_run(cfg: Config, store: Store, run_id: str | None, resume: str | None) -> Run:
    """A new run (``run_id`` or the UTC time), or the one ``resume`` names (an id, or
    ``"auto"`` for the newest unfinished run) with its settings, splits and state."""
    if resume:
        run_id = runs.latest_unfinished(store) if resume == "auto" else runs.resolve(store, resume)
        state = runs.read_state(store, run_id)
        logger.info("train: resuming run %s after epoch %d", run_id, state["epoch"] if state else 0)
        recorded = runs.read_spec(store, run_id) or spec.SPEC
        spec.check_same(recorded, f"run {run_id}")
        return Run(run_id, runs.read_train_config(store, run_id), recorded, runs.read_splits(store, run_id), state)
    run_id = run_id or runs.new_run_id()
    if store.exists(runs.key(run_id, "config.yml")):
        raise InputError(f"run {run_id} already exists; pass --resume {run_id} to continue it")
    found = runs.features_spec(store)
    spec.check_same(found, f"the features in {store.describe()}")
    return Run(run_id, cfg.train, found)


def build_data(cfg: Config, store: Store, run: Run, cache_dir: Path | None) -> Data:
    """Draw and write a new run's splits and configuration; index the stored features of
    every split; the fixed validation slices."""
    tc = run.tc
    if run.splits is None:
        usable = build_index(store, runs.read_labels(store), cache_dir)
        run.splits = make_splits(usable[["youtube_id", "label"]], tc.val_fraction, tc.test_fraction, tc.seed,
                                 groups=split_groups(store, tc.split_by))
        runs.write_splits(store, run.run_id, run.splits)
        runs.write_spec(store, run.run_id, run.feature_spec)
        runs.write_config(store, run.run_id, cfg.to_dict())
    index = build_index(store, run.splits, cache_dir)
    train_index = index[index["split"] == "train"].reset_index(drop=True)
    val_index = index[index["split"] == "val"].reset_index(drop=True)
    balance = class_balance(run.splits)
    logger.info("train: tracks per split (good/not-good): %s", ", ".join(
        f"{k} {v['tracks']} ({v['good']}/{v['not_good']})" for k, v in balance.items()))
    return Data(train_index, val_index, fixed_slices(val_index), balance)


def build_model_and_step(store: Store, run: Run, data: Data, work: Path) -> Trainer:
    """The model (a new one, or the run's last checkpoint with its optimizer state) on every
    device, and its compiled train step."""
    import keras

    tc, state = run.tc, run.state
    strategy = distribution()
    global_batch = tc.batch_size * strategy.num_replicas_in_sync
    steps_per_epoch = len(fixed_slices(data.train_index)) // global_batch
    if steps_per_epoch == 0:
        raise InputError(f"the train split has fewer slices than one batch ({global_batch})")
    keras.utils.set_random_seed(tc.seed + (state["epoch"] if state else 0))
    with strategy.scope():
        if state:
            ckpt = work / state["last"]
            store.get_file(runs.key(run.run_id, state["last"]), ckpt)
            model = keras.saving.load_model(ckpt)
        else:
            model = build_model(tc.width, head=tc.head)
            lr = keras.optimizers.schedules.CosineDecay(tc.learning_rate, decay_steps=tc.epochs * steps_per_epoch,
                                                        alpha=tc.final_lr_fraction)
            model.compile(optimizer=keras.optimizers.Adam(lr), loss="binary_crossentropy", jit_compile=False)
    return Trainer(model, strategy, make_train_step(model, strategy, global_batch), global_batch, steps_per_epoch)


def run_epoch(t: Trainer, data: Data, tc: TrainConfig, epoch: int) -> dict[str, Any]:
    """One epoch of train steps over every training slice (shuffled, for (seed, epoch)), then
    the validation slices scored: the epoch's record for the history."""
    import keras

    started = time.monotonic()
    items = training_slices(data.train_index, epoch, tc.seed, tc.random_crops)
    batches = t.strategy.experimental_distribute_dataset(make_dataset(items, t.global_batch, training=True))
    loss_sum = correct = 0.0
    for x, y in tqdm(batches, total=t.steps_per_epoch, desc=f"epoch {epoch}/{tc.epochs}", unit="batch"):
        loss, right = t.step(x, y)
        loss_sum, correct = loss_sum + float(loss), correct + float(right)
    val_p = predict(t.model, data.val_items, t.global_batch)
    val = level_metrics(level_scores(val_p, data.val_items, data.val_index))
    return {"epoch": epoch, "loss": loss_sum / t.steps_per_epoch,
            "accuracy": correct / (t.steps_per_epoch * t.global_batch),
            "val_loss": binary_cross_entropy(data.val_items.label, val_p),
            "val_accuracy": val["slice"]["accuracy"], "val_roc_auc": val["slice"]["roc_auc"],
            "val_track_roc_auc": val["track"]["roc_auc"],
            "learning_rate": float(keras.ops.convert_to_numpy(t.model.optimizer.learning_rate)),
            "seconds": round(time.monotonic() - started, 3)}


def commit_epoch(store: Store, run: Run, t: Trainer, record: dict[str, Any], work: Path) -> bool:
    """The epoch's commit: its full checkpoint, then ``state.json`` (the commit point), then
    the older checkpoints go; the model is exported when it is the best so far by validation
    ROC-AUC. Returns whether it improved."""
    state = run.state
    assert state is not None
    epoch = record["epoch"]
    score = record["val_roc_auc"] or 0.0
    improved = state["best_val_roc_auc"] is None or score > state["best_val_roc_auc"]
    name = f"checkpoint/epoch-{epoch:03d}.keras"
    (work / "checkpoint").mkdir(exist_ok=True)
    t.model.save(work / name)
    store.put_file(runs.key(run.run_id, name), work / name)
    stale = {state["last"], state["best"]}
    state.update(epoch=epoch, history=[*state["history"], record], last=name,
                 bad_epochs=0 if improved else state["bad_epochs"] + 1)
    if improved:
        state.update(best=name, best_epoch=epoch, best_val_roc_auc=score)
    runs.write_json(store, runs.key(run.run_id, "state.json"), state)  # the commit point of the epoch
    for old in stale - {state["last"], state["best"], None}:
        store.delete(runs.key(run.run_id, old))
    if improved:
        export_model(t.model, run.tc.width, work / runs.MODEL, run.feature_spec, run.tc.head)
        store.put_file(runs.key(run.run_id, runs.MODEL), work / runs.MODEL)
    runs.upload_tree(store, run.run_id, work, "tensorboard")
    return improved


def calibrate_best(store: Store, run: Run, data: Data, t: Trainer, work: Path) -> None:
    """Platt scaling of the best checkpoint's validation logits, folded into its output layer;
    the calibrated model becomes the run's ``model.keras``."""
    import keras

    state = run.state
    assert state is not None
    best = work / "best.keras"
    store.get_file(runs.key(run.run_id, state["best"]), best)
    best_model = keras.saving.load_model(best, compile=False)
    a, c = calibration.platt(predict(best_model, data.val_items, t.global_batch), data.val_items.label)
    calibration.fold_into_output(best_model, a, c)
    state["calibration"] = {"method": "Platt scaling on the validation slices", "a": a, "c": c}
    runs.write_json(store, runs.key(run.run_id, "state.json"), state)  # the report reads it
    export_model(best_model, run.tc.width, work / runs.MODEL, run.feature_spec, run.tc.head)
    store.put_file(runs.key(run.run_id, runs.MODEL), work / runs.MODEL)


def train(cfg: Config, store: Store, run_id: str | None = None, resume: str | None = None) -> TrainResult:
    """Train (or resume: ``resume`` = a run id, or ``"auto"`` for the newest unfinished run)
    and evaluate a run."""
    import tensorflow as tf

    run = open_run(cfg, store, run_id, resume)
    with scratch_dir("run") as scratch:  # after a kill -9, the next start removes it
        work = Path(scratch)
        data = build_data(cfg, store, run, Path(cfg.train.cache_dir) if cfg.train.cache_dir else None)
        t = build_model_and_step(store, run, data, work)
        tc = run.tc
        run.state = run.state or {
            "run_id": run.run_id, "epoch": 0, "history": [], "best_epoch": None, "best_val_roc_auc": None,
            "bad_epochs": 0, "last": None, "best": None, "finished": False,
            "steps_per_epoch": t.steps_per_epoch, "global_batch": t.global_batch}
        writer = tf.summary.create_file_writer(str(work / "tensorboard"))
        for epoch in range(run.state["epoch"] + 1, tc.epochs + 1):
            if run.state["bad_epochs"] >= tc.patience:
                break
            record = run_epoch(t, data, tc, epoch)
            log_scalars(writer, epoch, {k: v for k, v in record.items() if k != "epoch" and v is not None})
            improved = commit_epoch(store, run, t, record, work)
            logger.info("epoch %d: loss %.4f acc %.3f | val loss %.4f ROC-AUC slice %s track %s%s | lr %.2e | %.1f s",
                        epoch, record["loss"], record["accuracy"], record["val_loss"], _fmt(record["val_roc_auc"]),
                        _fmt(record["val_track_roc_auc"]), " (best)" if improved else "", record["learning_rate"],
                        record["seconds"])
        stopped_early = run.state["bad_epochs"] >= tc.patience
        if stopped_early:
            logger.info("train: stopped early, no improvement of validation ROC-AUC for %d epochs", tc.patience)
        calibrate_best(store, run, data, t, work)
        metrics = report.evaluate_run(cfg, store, run.run_id)
        run.state["finished"] = True
        runs.write_json(store, runs.key(run.run_id, "state.json"), run.state)
        runs.write_latest(store, run.run_id)
    return TrainResult(run.run_id, run.state["best_epoch"], stopped_early, metrics,
                       f"{store.describe()}/runs/{run.run_id}/", list(run.state["history"]))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
