"""The export stage: a finished training run becomes the served model in ``model/``.

``model/`` is the served model's home (:mod:`deepcurator.shipped`): the server and ``rate``
use ``model/model.keras`` when ``serve.model`` is left at its default and the store has no
finished run. An export copies from the run in the store:

- ``model.keras``: the model (float32, calibrated, the feature spec inside);
- ``MODEL_CARD.md``, ``metrics.json``: the run's model card and metrics, when evaluated;
- ``feature_spec.json``: the features it reads (:mod:`deepcurator.spec`);
- ``calibration.json``: the Platt scaling folded into its last layer (``{}`` when none);
- ``model.json``, written last: which model it is (run id, sha256 of ``model.keras``, what it
  was trained on, whether that is the synthetic demo corpus), when and by which version.

Each file is written atomically. A model trained on real data is not replaced by one trained
on the synthetic demo corpus unless ``force``: ``make demo`` must not overwrite a real model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepcurator import __version__, runs, shipped
from deepcurator.errors import InputError
from deepcurator.spec import SPEC, read_from_model
from deepcurator.store import Store, atomic_write

COPIED = ("MODEL_CARD.md", "metrics.json")
WRITTEN = (shipped.MODEL_FILE, *COPIED, "feature_spec.json", "calibration.json", shipped.MODEL_INFO)


@dataclass(frozen=True)
class Export:
    """What an export wrote: the model's identity (``model.json``) and the folder."""

    info: dict[str, Any]
    dest: Path
    elapsed_s: float

    def line(self) -> str:
        model = shipped.ModelInfo(self.info["run_id"], self.info["sha256"], self.info["trained_on"],
                                  self.info["synthetic_demo"])
        return f"export: model {model.line()} -> {self.dest} ({self.elapsed_s:.1f} s)"


def refusal(dest: Path, run_id: str, synthetic: bool | None) -> str | None:
    """Why exporting ``run_id`` into ``dest`` would lose a model trained on real data (one
    line), or None when it would not: ``dest`` holds another run's model that is not from the
    synthetic demo corpus, and ``run_id``'s is."""
    held = shipped.read_model_info(dest)
    if not held or held.get("run_id") == run_id or held.get("synthetic_demo") is not False or not synthetic:
        return None
    return (f"{dest} holds run {held.get('run_id')}, trained on {held.get('trained_on')}; run {run_id} was trained "
            "on the synthetic demo corpus and does not replace it (--force does)")


def run(store: Store, run: str, dest: Path, force: bool = False) -> Export:
    """Export the run ``run`` (an id, ``latest`` or ``runs/<id>``) of ``store`` into ``dest``."""
    started = time.monotonic()
    run_id = runs.resolve(store, run)
    model_key = runs.key(run_id, runs.MODEL)
    if not store.exists(model_key):
        raise InputError(f"run {run_id} has no {runs.MODEL} yet (still training? `deepcurator train --resume`)")
    trained_on, synthetic = shipped.trained_on(runs.read_config(store, run_id))
    why = None if force else refusal(dest, run_id, synthetic)
    if why:
        raise InputError(why)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / shipped.MODEL_INFO).unlink(missing_ok=True)  # the identity goes first and comes back last
    store.get_file(model_key, dest / shipped.MODEL_FILE)
    for name in COPIED:
        if store.exists(runs.key(run_id, name)):
            store.get_file(runs.key(run_id, name), dest / name)
        else:
            (dest / name).unlink(missing_ok=True)  # not another run's
    spec = runs.read_spec(store, run_id) or read_from_model(dest / shipped.MODEL_FILE) or SPEC
    _write(dest / "feature_spec.json", spec.to_json())
    state = runs.read_state(store, run_id) or {}
    _write(dest / "calibration.json", _json(state.get("calibration") or {}))
    metrics = _metrics(store, run_id)
    info = {
        "run_id": run_id,
        "sha256": shipped.file_sha256(dest / shipped.MODEL_FILE),
        "sha256_full": shipped.file_sha256(dest / shipped.MODEL_FILE, digits=64),
        "trained_on": trained_on,
        "synthetic_demo": synthetic,
        "model_file": shipped.MODEL_FILE,
        "feature_spec_version": spec.version,
        "test_track_roc_auc": ((metrics.get("test") or {}).get("track") or {}).get("roc_auc"),
        "exported_from": f"{store.describe()}/{runs.key(run_id, '')}",
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "deepcurator_version": __version__,
    }
    _write(dest / shipped.MODEL_INFO, _json(info))
    return Export(info, dest, time.monotonic() - started)


def _metrics(store: Store, run_id: str) -> dict[str, Any]:
    k = runs.key(run_id, "metrics.json")
    if not store.exists(k):
        return {}
    data = json.loads(store.get_bytes(k))
    return data if isinstance(data, dict) else {}


def _json(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda out: out.write(data))
