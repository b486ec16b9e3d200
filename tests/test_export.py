"""model/, the served model's home: `deepcurator export` writes a run there, and the server and
`rate` fall back on it when serve.model is left at its default and the store has no run; every
answer says which model it is and whether it was trained on the synthetic demo corpus."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from deepcurator import config as config_mod
from deepcurator import shipped
from deepcurator.demo.pipeline import free_port
from deepcurator.demo.server_process import stop, wait_until_healthy
from deepcurator.errors import ConfigError
from deepcurator.serving.scoring import resolve_model
from deepcurator.store import open_store

from tests.helpers.cli import REPO, cli_env, run_cli, write_config
from tests.helpers.serving import RUN_ID, publish_run

CALIBRATION = {"method": "Platt scaling on the validation slices", "a": 1.5, "c": -0.25}


def publish_finished_run(store_path: Path, model: Path, run_id: str = RUN_ID, source: str = "demo") -> Path:
    """A finished run as the trainer leaves it: config.yml (with labels.data_source), the model,
    metrics, state with its calibration, the model card; runs/latest names it."""
    cfg = config_mod.from_dict({"store": {"path": str(store_path)}, "labels": {"data_source": source}})
    store = open_store(cfg)
    publish_run(store, model, run_id)
    store.put_bytes(f"runs/{run_id}/config.yml", yaml.safe_dump(cfg.to_dict()).encode())
    store.put_bytes(f"runs/{run_id}/state.json", json.dumps({"finished": True, "calibration": CALIBRATION}).encode())
    store.put_bytes(f"runs/{run_id}/metrics.json", json.dumps({"run_id": run_id, "test": {"track": {"roc_auc": 0.9}}})
                    .encode())
    store.put_bytes(f"runs/{run_id}/MODEL_CARD.md", f"# Model card: DeepCurator run `{run_id}`\n".encode())
    return store_path


def test_export_writes_the_model_and_its_identity(tiny_model: Path, tmp_path: Path) -> None:
    store = publish_finished_run(tmp_path / "store", tiny_model)
    config = write_config(config_mod.from_dict({"store": {"path": str(store)}}), tmp_path / "config.yml")
    proc = run_cli("--config", str(config), "export", "--to", str(tmp_path / "model"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    model = tmp_path / "model"
    sha = shipped.file_sha256(tiny_model)
    assert proc.stdout.strip().startswith(f"export: model run {RUN_ID} (sha256 {sha}), trained on the synthetic demo")
    assert (model / "model.keras").read_bytes() == tiny_model.read_bytes()
    assert sorted(p.name for p in model.iterdir()) == ["MODEL_CARD.md", "calibration.json", "feature_spec.json",
                                                       "metrics.json", "model.json", "model.keras"]
    assert json.loads((model / "calibration.json").read_text()) == CALIBRATION
    assert json.loads((model / "feature_spec.json").read_text())["version"] == 1
    info = json.loads((model / "model.json").read_text())
    assert info["run_id"] == RUN_ID and info["sha256"] == sha and info["synthetic_demo"] is True
    assert info["trained_on"] == shipped.SYNTHETIC_TEXT and info["test_track_roc_auc"] == 0.9


def test_a_demo_model_never_replaces_a_real_one_unless_forced(tiny_model: Path, tmp_path: Path) -> None:
    real = publish_finished_run(tmp_path / "real", tiny_model, "real-run", source="discogs")
    demo = publish_finished_run(tmp_path / "demo", tiny_model, "demo-run", source="demo")
    dest = tmp_path / "model"
    for store in (real, demo):
        (tmp_path / f"{store.name}.yml").write_text(f"store:\n  path: {store}\n")
    assert run_cli("--config", str(tmp_path / "real.yml"), "export", "--to", str(dest), cwd=tmp_path).returncode == 0
    assert json.loads((dest / "model.json").read_text())["trained_on"] == "the Discogs table dataset.csv"
    proc = run_cli("--config", str(tmp_path / "demo.yml"), "export", "--to", str(dest), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "holds run real-run" in proc.stderr and "--force" in proc.stderr
    assert json.loads((dest / "model.json").read_text())["run_id"] == "real-run"
    proc = run_cli("--config", str(tmp_path / "demo.yml"), "export", "--to", str(dest), "--force", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((dest / "model.json").read_text())["run_id"] == "demo-run"


def test_the_exported_model_stands_in_only_for_the_default(tiny_model: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    publish_finished_run(tmp_path / "trained", tiny_model)
    from deepcurator.stages import export

    export.run(open_store(config_mod.from_dict({"store": {"path": str(tmp_path / "trained")}})), "latest",
               tmp_path / "work" / "model")
    monkeypatch.chdir(tmp_path / "work")
    cfg = config_mod.from_dict({"store": {"path": str(tmp_path / "empty")}})
    source = resolve_model(cfg)
    assert source.path == tmp_path / "work" / "model" / "model.keras"
    assert (source.run_id, source.synthetic, source.trained_on) == (RUN_ID, True, shipped.SYNTHETIC_TEXT)
    assert "has no finished run" in source.origin
    cfg.set_by_flag("serve.model", "runs/latest", "--model")  # named by the user: that model or nothing
    with pytest.raises(ConfigError, match="runs/latest is not in the store"):
        resolve_model(cfg)
    with pytest.raises(ConfigError):
        resolve_model(config_mod.from_dict({"store": {"path": str(tmp_path / "empty")}}), "runs/latest")
    publish_finished_run(tmp_path / "empty", tiny_model, "own-run", source="discogs")  # a run of its own wins
    own = resolve_model(config_mod.from_dict({"store": {"path": str(tmp_path / "empty")}}))
    assert (own.run_id, own.synthetic, own.trained_on) == ("own-run", False, "the Discogs table dataset.csv")


def test_server_py_serves_the_exported_model_and_says_which(tiny_model: Path, audio_set: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """`python server.py` with no flags, no config and an empty store serves model/; /health, the
    JSON answer and the page say which model it is and that it was trained on the demo corpus."""
    publish_finished_run(tmp_path / "trained", tiny_model)
    from deepcurator.stages import export

    work = tmp_path / "checkout"
    export.run(open_store(config_mod.from_dict({"store": {"path": str(tmp_path / "trained")}})), "latest",
               work / "model")
    shutil.copy(REPO / "server.py", work / "server.py")
    port = free_port()
    env = cli_env(DEEPCURATOR_SERVE_PORT=str(port), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    proc = subprocess.Popen([sys.executable, "server.py"], cwd=work, env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        health = wait_until_healthy(url, proc)
        sha = shipped.file_sha256(tiny_model)
        assert health["run_id"] == RUN_ID
        assert health["model"] == {"run_id": RUN_ID, "sha256": sha, "trained_on": shipped.SYNTHETIC_TEXT,
                                   "synthetic_demo": True, "source": health["model"]["source"]}
        assert str(work / "model" / "model.keras") in health["model"]["source"]
        with open(audio_set["wav"], "rb") as fh:
            answer = requests.post(f"{url}/predict", files={"audio": ("song.wav", fh)}, timeout=120).json()
        assert 0 <= answer["score"] <= 100 and answer["model"]["synthetic_demo"] is True
        assert answer["model"]["sha256"] == sha
        page = requests.get(url, timeout=10).text
        assert 'id="model-warning"' in page and sha in page and "synthetic demo corpus" in page
    finally:
        stop(proc)
    first = proc.stdout.readline() if proc.stdout else ""
    assert f"serve: model run {RUN_ID} (sha256 {sha}), trained on the synthetic demo corpus" in first
    assert "has no finished run" in first
