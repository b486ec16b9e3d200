"""What the repository ships at its top level, as the original did: dataset.csv (the original's
Discogs table) and labels.csv (what `deepcurator labels` writes from it by default), and the
stages' fallbacks to them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deepcurator import config as config_mod
from deepcurator import shipped
from deepcurator.errors import InputError
from deepcurator.store import open_store

from tests.helpers.cli import REPO, SHARED_DATASET, cli_env, run_cli, write_config

DATASET = REPO / "dataset.csv"
LABELS = REPO / "labels.csv"


def test_the_shipped_dataset_is_the_original_table() -> None:
    table = pd.read_csv(DATASET, dtype={"youtube_id": str})
    assert list(table.columns) == ["discogs_id", "have", "want", "rating_average", "rating_count", "price",
                                   "youtube_id"]
    assert len(table) == 90370
    if SHARED_DATASET.is_file():
        assert DATASET.read_bytes() == SHARED_DATASET.read_bytes()


def test_create_labels_without_arguments_writes_the_shipped_labels(tmp_path: Path) -> None:
    """`python create_labels.py` with the default settings, from a folder without a dataset.csv:
    it reads the project's table, says so, and writes labels.csv byte for byte as shipped."""
    write_config(config_mod.from_dict({"store": {"path": str(tmp_path / "store")}}), tmp_path / "config.yml")
    proc = subprocess.run([sys.executable, str(REPO / "create_labels.py")], cwd=tmp_path, env=cli_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"reading the project's {DATASET}" in proc.stderr
    assert "read 90370 items" in proc.stdout and "labelled 15000 good + 15000 not-good" in proc.stdout
    assert (tmp_path / "store" / "labels.csv").read_bytes() == LABELS.read_bytes()


def test_download_without_labels_uses_the_shipped_ones(tmp_path: Path) -> None:
    """As in the original, the labels step is optional: download copies the shipped labels.csv
    into a store that has none, and says so (--limit 0: nothing is fetched)."""
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "store")}})
    proc = run_cli("--config", str(write_config(cfg, tmp_path / "c.yml")), "download", "--limit", "0",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"has no labels.csv; using the shipped {LABELS}" in proc.stderr
    assert (tmp_path / "store" / "labels.csv").read_bytes() == LABELS.read_bytes()


def test_no_labels_anywhere_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepcurator.stages import download

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(shipped, "project_dir", lambda: tmp_path)
    store = open_store(config_mod.from_dict({"store": {"path": str(tmp_path / "store")}}))
    with pytest.raises(InputError, match="run `deepcurator labels` first") as err:
        download.read_ids(store)
    assert "labels.csv" in str(err.value) and "\n" not in str(err.value)


def test_a_dataset_in_the_working_directory_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deepcurator.stages import labels

    monkeypatch.chdir(tmp_path)
    assert labels.locate_dataset("dataset.csv") == DATASET
    (tmp_path / "dataset.csv").write_text("discogs_id\n")
    assert labels.locate_dataset("dataset.csv") == Path("dataset.csv")
    assert labels.locate_dataset(str(tmp_path / "none.csv")) == tmp_path / "none.csv"
    assert labels.locate_dataset("none.csv") == Path("none.csv")
