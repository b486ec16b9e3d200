"""Session fixtures for the serving tests, registered for the whole suite by
``pytest_plugins`` in tests/conftest.py: ask for them by name, never import them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.helpers.serving import RUN_ID, build_tiny_model, make_audio_set


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A width-0.125 model file, built once."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "model.keras")


@pytest.fixture(scope="session")
def audio_set(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The error-case files of :func:`~tests.helpers.serving.make_audio_set`, made once."""
    return make_audio_set(tmp_path_factory.mktemp("audio"))


@pytest.fixture(scope="session")
def tiny_scorer(tiny_model: Path):  # noqa: ANN201
    """A :class:`~deepcurator.serving.scoring.Scorer` of ``tiny_model`` as run ``RUN_ID``."""
    from deepcurator.serving.scoring import ModelSource, Scorer

    return Scorer(ModelSource(tiny_model, RUN_ID))


@pytest.fixture
def upload_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temp folder for uploads, to check that none is left behind."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder
