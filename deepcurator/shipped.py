"""What the repository ships at its top level, and which model is which.

The project ships, as the original did, ``dataset.csv`` (the original project's Discogs table,
compiled in 2019), ``labels.csv`` (what ``deepcurator labels`` writes from it with the default
settings) and ``model/``, the served model's home (``deepcurator export`` writes a run there;
the weights are not committed). :func:`find` looks for them in the working directory first,
then in the project's folder (the parent of the installed ``deepcurator`` package: the
checkout, for the usual editable install), so ``python create_labels.py`` works from the
checkout and ``deepcurator rate ~/Music`` from anywhere.

A model's identity (:class:`ModelInfo`) is its run id, the first 12 hex digits of the sha256
of its ``model.keras``, and what it was trained on: the run's ``labels.data_source``
(``discogs``: the Discogs table named by ``labels.dataset``; ``demo``: the synthetic corpus of
``deepcurator demo-corpus``, which ``make demo`` sets). An exported model keeps it in
``model/model.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATASET = "dataset.csv"
LABELS = "labels.csv"
MODEL_DIR = "model"
MODEL_FILE = "model.keras"
MODEL_INFO = "model.json"

DEMO_SOURCE = "demo"
DISCOGS_SOURCE = "discogs"
DATA_SOURCES = (DISCOGS_SOURCE, DEMO_SOURCE)
SYNTHETIC_TEXT = "the synthetic demo corpus (deepcurator demo-corpus)"
SHIPPED_DATASET_DATE = "compiled in 2019 by the original DeepCurator project"


def project_dir() -> Path:
    """The folder above the ``deepcurator`` package: the checkout, for an editable install."""
    return Path(__file__).resolve().parent.parent


def find(name: str | Path) -> Path | None:
    """``name`` (a relative path) in the working directory, else in :func:`project_dir`, else
    None. An absolute path is returned when it exists."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return path if path.exists() else None
    for base in (Path.cwd(), project_dir()):
        if (base / path).exists():
            return base / path
    return None


def is_shipped_dataset(path: Path) -> bool:
    """Whether ``path`` is the project's own ``dataset.csv`` (the original's 2019 table)."""
    return path.resolve() == (project_dir() / DATASET).resolve()


def model_file() -> Path | None:
    """``model/model.keras`` (:func:`find`), the exported model, or None."""
    found = find(Path(MODEL_DIR) / MODEL_FILE)
    return found if found is not None and found.is_file() else None


def file_sha256(path: Path, digits: int = 12) -> str:
    """The first ``digits`` hex digits of the sha256 of the file ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:digits]


def trained_on(run_config: dict[str, Any] | None) -> tuple[str, bool | None]:
    """What a run was trained on, from its stored ``config.yml``: a description and whether it
    is the synthetic demo corpus (None: unknown, a run from before data sources were recorded)."""
    labels = (run_config or {}).get("labels") or {}
    source = labels.get("data_source")
    if source == DEMO_SOURCE:
        return SYNTHETIC_TEXT, True
    if source == DISCOGS_SOURCE:
        return f"the Discogs table {Path(str(labels.get('dataset') or DATASET)).name}", False
    return "unknown (a run from before data sources were recorded)", None


@dataclass(frozen=True)
class ModelInfo:
    """Which model it is: run id, sha256 prefix of ``model.keras``, what it was trained on."""

    run_id: str
    sha256: str
    trained_on: str
    synthetic: bool | None

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "sha256": self.sha256, "trained_on": self.trained_on,
                "synthetic_demo": self.synthetic}

    def line(self) -> str:
        """``run ID (sha256 …), trained on …`` with a warning for the demo's model."""
        warning = " (not real music: its scores say nothing about real tracks)" if self.synthetic else ""
        return f"run {self.run_id} (sha256 {self.sha256}), trained on {self.trained_on}{warning}"


def read_model_info(folder: Path) -> dict[str, Any] | None:
    """The ``model.json`` an export wrote into ``folder``, or None."""
    path = folder / MODEL_INFO
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
