"""The prediction service on a real port, answered to a real HTTP client: every answer,
including the error cases with real broken files; `deepcurator serve` and gunicorn too."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from deepcurator import __version__, audio, features
from deepcurator.config import Config, from_dict
from deepcurator.demo.pipeline import free_port
from deepcurator.demo.server_process import stop, wait_until_healthy
from deepcurator.serving.app import create_app
from deepcurator.serving.scoring import Scorer
from deepcurator.store import open_store

from tests.helpers.cli import cli_env, write_config
from tests.helpers.serving import RUN_ID, publish_run, running_server


@pytest.fixture
def server(tiny_scorer: Scorer, upload_tmp: Path) -> Iterator[str]:
    cfg = from_dict({"serve": {"max_upload_mb": 15, "max_duration_s": 80}})
    with running_server(create_app(cfg, tiny_scorer)) as url:
        yield url
    assert list(upload_tmp.iterdir()) == []


def post(url: str, path: Path | None, **kwargs: Any) -> requests.Response:
    if path is None:
        return requests.post(f"{url}/predict", files={"other": ("x.txt", b"hello")}, timeout=60, **kwargs)
    with open(path, "rb") as fh:
        return requests.post(f"{url}/predict", files={"audio": (path.name, fh)}, timeout=60, **kwargs)


def test_health_and_page(server: str) -> None:
    body = requests.get(f"{server}/health", timeout=10).json()
    model = body.pop("model")
    assert body == {"status": "ok", "model_loaded": True, "run_id": RUN_ID, "version": __version__,
                    "aggregation": "mean"}
    assert model["run_id"] == RUN_ID and len(model["sha256"]) == 12 and model["synthetic_demo"] is None
    page = requests.get(server, timeout=10)
    assert page.status_code == 200 and 'id="chart"' in page.text and 'type="file"' in page.text
    assert requests.get(f"{server}/static/app.js", timeout=10).status_code == 200


def test_predict_json_matches_the_model_on_the_process_features(server: str, audio_set: dict[str, Path],
                                                                tiny_scorer: Scorer) -> None:
    r = post(server, audio_set["wav"])
    assert r.status_code == 200, r.text
    body = r.json()
    x = features.model_input(features.logmel(audio.decode(audio_set["wav"])))
    per_slice = tiny_scorer.predict(x)
    assert body["score"] == pytest.approx(round(100 * float(per_slice.mean()), 2), abs=0.011)
    assert body["label"] == ("good" if body["score"] > 50 else "not-good")
    assert body["run_id"] == RUN_ID and body["truncated"] is False
    assert body["duration_s"] == pytest.approx(65.0, abs=0.05)
    assert [s["score"] for s in body["slices"]] == pytest.approx(100 * per_slice, abs=0.011)
    assert [(s["start"], s["end"]) for s in body["slices"]] == [(0.0, 29.98), (29.98, 59.95)]


def test_predict_text(server: str, audio_set: dict[str, Path]) -> None:
    score = post(server, audio_set["wav"]).json()["score"]
    for kwargs in ({"headers": {"Accept": "text/plain"}}, {"params": {"format": "text"}}):
        r = post(server, audio_set["wav"], **kwargs)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert float(r.text) == pytest.approx(score, abs=0.011) and r.text.strip() == f"{float(r.text):.2f}"


@pytest.mark.parametrize(("name", "status", "needle"), [
    (None, 400, "field 'audio'"),
    ("text", 400, "not a readable audio file"),
    ("truncated", 400, ""),
    ("empty", 400, "empty"),
    ("short", 400, "10.0 s long"),
    ("mp3", 413, "longer than the 80 s limit"),   # 95 s > serve.max_duration_s 80
    ("big", 413, "larger than the 15 MB limit"),  # serve.max_upload_mb 15
])
def test_errors_are_json(server: str, audio_set: dict[str, Path], tmp_path: Path, name: str | None, status: int,
                         needle: str) -> None:
    path = None
    if name == "big":
        path = tmp_path / "big.wav"  # 2 × 65 s of 16-bit stereo wav: 23 MB
        path.write_bytes(audio_set["wav"].read_bytes() * 2)
    elif name:
        path = audio_set[name]
    r = post(server, path)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status and needle in body["error"]
    assert requests.get(f"{server}/health", timeout=10).status_code == 200  # still serving


def test_over_duration_truncate(tiny_scorer: Scorer, audio_set: dict[str, Path], upload_tmp: Path) -> None:
    cfg = from_dict({"serve": {"max_duration_s": 60, "over_duration": "truncate"}})
    with running_server(create_app(cfg, tiny_scorer)) as url:
        body = post(url, audio_set["mp3"]).json()
    assert body["truncated"] is True and len(body["slices"]) == 2 and body["duration_s"] == pytest.approx(60, abs=0.1)


def test_decode_time_limit(tiny_scorer: Scorer, audio_set: dict[str, Path], upload_tmp: Path) -> None:
    cfg = from_dict({"serve": {"decode_timeout_s": 0.001}})
    with running_server(create_app(cfg, tiny_scorer)) as url:
        r = post(url, audio_set["mp3"])
    assert r.status_code == 400 and "took longer than 0.001 s" in r.json()["error"]


def test_concurrent_requests_agree(server: str, audio_set: dict[str, Path]) -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: post(server, p).json(), [audio_set["wav"]] * 4))
    assert len({a["score"] for a in answers}) == 1


@pytest.mark.slow
def test_deepcurator_serve_from_the_store(cfg: Config, tiny_model: Path, audio_set: dict[str, Path],
                                          tmp_path: Path) -> None:
    """The CLI server reads runs/latest from the store (local folder, then S3)."""
    publish_run(open_store(cfg), tiny_model)
    cfg.serve.model_cache_dir = str(tmp_path / "cache")
    config = write_config(cfg, tmp_path / "config.yml")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "--config", str(config), "serve",
                             "--port", str(port)],
                            cwd=tmp_path, env=cli_env())
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_healthy(url, proc)["run_id"] == RUN_ID
        assert post(url, audio_set["wav"]).json()["run_id"] == RUN_ID
    finally:
        stop(proc)


@pytest.mark.slow
def test_gunicorn_two_workers(tiny_model: Path, audio_set: dict[str, Path], tmp_path: Path) -> None:
    """The documented production command: each of the two workers loads the model itself."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed in this environment")
    port = free_port()
    env = cli_env(DEEPCURATOR_SERVE_MODEL=str(tiny_model), DEEPCURATOR_STORE_PATH=str(tmp_path / "store"))
    proc = subprocess.Popen([str(gunicorn), "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "120",
                             "deepcurator.serving.wsgi:app"], cwd=tmp_path, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_until_healthy(url, proc)["run_id"] == tiny_model.parent.name  # the folder of model.keras
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda p: post(url, p), [audio_set["wav"], audio_set["short"]] * 2))
        assert [a.status_code for a in answers] == [200, 400] * 2
    finally:
        stop(proc)
    assert proc.returncode == 0
