"""The feature spec travels: the store's features, every run and every exported model carry
it, and mixing specs is refused in one line naming the fields that differ."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deepcurator import features, layout, spec
from deepcurator.config import from_dict
from deepcurator.errors import ConfigError
from deepcurator.serving.scoring import ModelSource, Scorer
from deepcurator.stages import process
from deepcurator.store import LocalStore

from tests.helpers.cli import run_cli, write_config
from tests.helpers.serving import build_tiny_model

OTHER = dataclasses.replace(spec.SPEC, n_mels=96, hop=256)


def test_the_spec_is_the_one_definition() -> None:
    s = spec.SPEC
    assert (s.n_mels, s.hop, s.n_fft, 1291) == (features.N_MELS, features.HOP, features.N_FFT, features.SLICE_FRAMES)
    assert s.slice_frames == 1291 and s.db_floor == pytest.approx(-100.0)
    assert spec.FeatureSpec.from_json(s.to_json()) == s
    assert [d.split()[0] for d in OTHER.differences(s)] == ["hop", "n_mels", "slice_frames"]
    with pytest.raises(ConfigError, match="unknown feature spec fields colour"):
        spec.FeatureSpec.from_dict({**s.to_dict(), "colour": "red"})
    with pytest.raises(ConfigError, match="slice_frames 1000 does not follow"):
        spec.FeatureSpec.from_dict({**s.to_dict(), "slice_frames": 1000})


def test_a_model_carries_its_spec_and_another_spec_is_refused(tmp_path: Path) -> None:
    good = build_tiny_model(tmp_path / "good" / "model.keras")
    spec.write_into_model(good)
    assert spec.read_from_model(good) == spec.SPEC
    assert Scorer(ModelSource(good, "good")).feature_spec == spec.SPEC

    other = build_tiny_model(tmp_path / "other" / "model.keras")
    spec.write_into_model(other, OTHER)
    with pytest.raises(spec.SpecMismatch) as refused:
        Scorer(ModelSource(other, "other"))
    message = str(refused.value)
    assert "\n" not in message and "n_mels 96 vs 128" in message and "hop 256 vs 512" in message

    proc = run_cli("rate", "--model", str(other), str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "n_mels 96 vs 128" in proc.stderr


def test_a_model_without_a_spec_is_taken_as_version_1(tmp_path: Path) -> None:
    old = build_tiny_model(tmp_path / "old.keras")
    assert spec.read_from_model(old) is None
    assert Scorer(ModelSource(old, "old")).feature_spec == spec.SPEC


def test_the_process_stage_writes_the_spec_and_refuses_to_mix(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    process.claim_spec(store)
    assert spec.FeatureSpec.from_json(store.get_bytes(layout.FEATURE_SPEC)) == spec.SPEC
    process.claim_spec(store)  # the same spec again: fine

    mixed = LocalStore(tmp_path / "mixed")
    mixed.put_bytes(layout.FEATURE_SPEC, OTHER.to_json())
    cfg = from_dict({"store": {"path": str(tmp_path / "mixed")}})
    proc = run_cli("--config", str(write_config(cfg, tmp_path / "config.yml")), "process", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "n_mels 96 vs 128" in line and "feature_spec.json" in line
    assert not list(mixed.list(layout.FEATURES_PREFIX))
