"""A training run in the store: ``runs/<run_id>/`` and the ``runs/latest`` pointer.

Layout (CONTRACTS.md): ``model.keras`` (the best model by validation ROC-AUC, float32,
no optimizer: loadable with ``keras.saving.load_model``), ``config.yml``, ``splits.csv``,
``state.json`` (epochs done, history, best epoch, the checkpoint names),
``checkpoint/epoch-NNN.keras`` (full checkpoints with optimizer state: the last one and the
best one), ``tensorboard/``, and when finished ``metrics.json``, ``predictions.csv``,
``*.png`` and ``MODEL_CARD.md``. ``runs/latest`` holds the id of the newest finished run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deepcurator.errors import InputError
from deepcurator.store import Store

LATEST = "runs/latest"


def key(run_id: str, name: str) -> str:
    return f"runs/{run_id}/{name}"


def new_run_id() -> str:
    """A fresh run id: the UTC time, ``YYYYmmdd-HHMMSS``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def resolve(store: Store, run: str) -> str:
    """The run id named by ``run``: an id, ``latest`` or ``runs/<id>``."""
    run = run.strip().strip("/")
    if run in ("latest", LATEST):
        if not store.exists(LATEST):
            raise InputError(f"no finished run in {store.describe()} (runs/latest is absent)")
        run = store.get_bytes(LATEST).decode().strip()
    run = run.removeprefix("runs/")
    if not store.exists(key(run, "config.yml")):
        raise InputError(f"run {run!r} is not in {store.describe()}/runs/")
    return run


def read_state(store: Store, run_id: str) -> dict[str, Any] | None:
    """The run's ``state.json``, or None before its first epoch ends."""
    k = key(run_id, "state.json")
    return json.loads(store.get_bytes(k)) if store.exists(k) else None


def write_json(store: Store, k: str, data: Any) -> None:
    store.put_bytes(k, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def latest_unfinished(store: Store) -> str:
    """The newest run that has started but not finished (for ``train --resume``)."""
    ids = sorted({k.split("/")[1] for k in store.list("runs/") if k.endswith("/config.yml")}, reverse=True)
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
