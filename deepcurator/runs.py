"""Run artifacts: a training run in the store, ``runs/<run_id>/``, and the ``runs/latest`` pointer.

The one module that reads and writes them, for the trainer, the report, ``evaluate`` and the
scorer alike. A run holds ``config.yml`` (the configuration it was started with),
``splits.csv`` (``youtube_id,split,label``), ``feature_spec.json`` (the spec of the features it
read, :mod:`deepcurator.spec`), ``state.json`` (epochs done, history, best epoch, the
checkpoint names), ``checkpoint/epoch-NNN.keras`` (full checkpoints with optimizer state),
``tensorboard/``, ``model.keras`` (the best model: float32, no optimizer, the feature spec
inside), and when finished ``metrics.json``, ``predictions.csv``, ``*.png`` and
``MODEL_CARD.md``. ``runs/latest`` holds the id of the newest finished run.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from deepcurator import layout
from deepcurator.config import TrainConfig, from_dict
from deepcurator.errors import InputError
from deepcurator.spec import SPEC, FeatureSpec
from deepcurator.store import Store

LATEST = layout.LATEST_RUN
MODEL = "model.keras"


def key(run_id: str, name: str) -> str:
    """``runs/<run_id>/<name>``."""
    return layout.run_key(run_id, name)


def new_run_id() -> str:
    """A fresh run id: the UTC time, ``YYYYmmdd-HHMMSS``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def read_latest(store: Store) -> str | None:
    """The id ``runs/latest`` names, or None when no run has finished."""
    if not store.exists(LATEST):
        return None
    return store.get_bytes(LATEST).decode().strip() or None


def write_latest(store: Store, run_id: str) -> None:
    """Point ``runs/latest`` at ``run_id`` (atomically)."""
    store.put_bytes(LATEST, f"{run_id}\n".encode())


def resolve(store: Store, run: str) -> str:
    """The run id named by ``run``: an id, ``latest`` or ``runs/<id>``."""
    run = run.strip().strip("/")
    if run in ("latest", LATEST):
        latest = read_latest(store)
        if latest is None:
            raise InputError(f"no finished run in {store.describe()} (runs/latest is absent)")
        run = latest
    run = run.removeprefix(layout.RUNS_PREFIX)
    if not store.exists(key(run, "config.yml")):
        raise InputError(f"run {run!r} is not in {store.describe()}/runs/")
    return run


def read_state(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's ``state.json``, or None before its first epoch ends."""
    k = key(run_id, "state.json")
    return json.loads(store.get_bytes(k)) if store.exists(k) else None


def write_json(store: Store, k: str, data: Any) -> None:
    """``data`` as indented JSON under the key ``k`` (atomically)."""
    store.put_bytes(k, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def latest_unfinished(store: Store) -> str:
    """The newest run that has started but not finished (for ``train --resume``)."""
    ids = sorted({k.split("/")[1] for k in store.list(layout.RUNS_PREFIX) if k.endswith("/config.yml")}, reverse=True)
    for run_id in ids:
        state = read_state(store, run_id)
        if state is None or not state.get("finished"):
            return run_id
    raise InputError(f"no unfinished run to resume in {store.describe()}/runs/")


def upload_tree(store: Store, run_id: str, local: Path, sub: str) -> None:
    """Upload every file under ``local/sub`` to ``runs/<run_id>/sub/``."""
    for path in sorted((local / sub).rglob("*")):
        if path.is_file():
            store.put_file(key(run_id, path.relative_to(local).as_posix()), path)


def read_labels(store: Store) -> pd.DataFrame:
    """The store's ``labels.csv`` (what a run trains on): ``youtube_id, label``."""
    if not store.exists(layout.LABELS):
        raise InputError(f"{layout.LABELS} is not in {store.describe()} (run `deepcurator labels`)")
    labels = pd.read_csv(io.BytesIO(store.get_bytes(layout.LABELS)), dtype={"youtube_id": str})
    if not {"youtube_id", "label"} <= set(labels.columns):
        raise InputError(f"{layout.LABELS} needs the columns youtube_id,label")
    return labels[["youtube_id", "label"]].astype({"label": int})


def read_scores(store: Store) -> pd.DataFrame | None:
    """The store's ``scores.csv`` (every row of the dataset with its score), or None."""
    if not store.exists(layout.SCORES):
        return None
    return pd.read_csv(io.BytesIO(store.get_bytes(layout.SCORES)), dtype={"youtube_id": str}, low_memory=False)


def write_config(store: Store, run_id: str, config: dict[str, Any]) -> None:
    """The run's ``config.yml`` (secrets already redacted by the caller)."""
    store.put_bytes(key(run_id, "config.yml"), yaml.safe_dump(config, sort_keys=False).encode())


def read_config(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's stored ``config.yml`` as plain data, or None when it has none."""
    k = key(run_id, "config.yml")
    if not store.exists(k):
        return None
    data = yaml.safe_load(store.get_bytes(k))
    return data if isinstance(data, dict) else None


def read_train_config(store: Store, run_id: str) -> TrainConfig:
    """The ``train:`` section a run was started with (its stored ``config.yml``)."""
    return from_dict({"train": yaml.safe_load(store.get_bytes(key(run_id, "config.yml")))["train"]}).train


def write_splits(store: Store, run_id: str, splits: pd.DataFrame) -> None:
    store.put_bytes(key(run_id, "splits.csv"), splits.to_csv(index=False).encode())


def read_splits(store: Store, run_id: str) -> pd.DataFrame:
    """The run's ``splits.csv``: ``youtube_id, split, label``."""
    return pd.read_csv(io.BytesIO(store.get_bytes(key(run_id, "splits.csv"))), dtype={"youtube_id": str})


def features_spec(store: Store) -> FeatureSpec:
    """The spec of the store's features (``feature_spec.json``; a store processed before the
    file existed holds version 1, :data:`~deepcurator.spec.SPEC`'s)."""
    if not store.exists(layout.FEATURE_SPEC):
        return SPEC
    return FeatureSpec.from_json(store.get_bytes(layout.FEATURE_SPEC), f"{store.describe()}/{layout.FEATURE_SPEC}")


def write_spec(store: Store, run_id: str, spec: FeatureSpec) -> None:
    """The run's ``feature_spec.json``."""
    store.put_bytes(key(run_id, "feature_spec.json"), spec.to_json())


def read_spec(store: Store, run_id: str) -> FeatureSpec | None:
    """The run's ``feature_spec.json``, or None for a run from before specs were recorded."""
    k = key(run_id, "feature_spec.json")
    return FeatureSpec.from_json(store.get_bytes(k), f"{store.describe()}/{k}") if store.exists(k) else None
