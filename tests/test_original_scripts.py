"""The original project's sequence, as its README told users: `create_labels.py`,
`download_data.py`, `process_audio.py`, `train.py`, `server.py`, then
`curl -X POST -F audio=@"audio.mp3" 'http://localhost:5000/predict'`, on a small generated
corpus (a local file:// URL template plays YouTube), with a config.yml in the working folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from deepcurator.demo.corpus import url_template
from deepcurator.demo.pipeline import free_port
from deepcurator.demo.server_process import stop, wait_until_healthy

from tests.helpers.cli import REPO, cli_env, run_cli

TRACKS = 24
SCRIPTS = ("create_labels.py", "download_data.py", "process_audio.py", "train.py", "server.py")


def post_like_curl(url: str, audio: Path) -> tuple[int, str]:
    """POST ``audio`` as the form field ``audio`` the way the original's README did: with the real
    curl when there is one, else requests' multipart encoding (the same form)."""
    curl = shutil.which("curl")
    if curl:
        proc = subprocess.run([curl, "-sS", "-X", "POST", "-F", f"audio=@{audio}", "-w", "\n%{http_code}", url],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        body, _, status = proc.stdout.rpartition("\n")
        return int(status), body
    with open(audio, "rb") as fh:
        answer = requests.post(url, files={"audio": (audio.name, fh)}, timeout=120)
    return answer.status_code, answer.text


@pytest.mark.slow
def test_the_original_scripts_in_order(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    made = run_cli("demo-corpus", "--out", str(corpus), "--tracks", str(TRACKS), cwd=tmp_path, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]

    work = tmp_path / "checkout"
    work.mkdir()
    for script in SCRIPTS:
        shutil.copy(REPO / script, work / script)
    port = free_port()
    (work / "config.yml").write_text(yaml.safe_dump({
        "store": {"path": "data"},
        "labels": {"dataset": str(corpus / "dataset.csv"), "data_source": "demo", "n": 7},
        "download": {"url_template": url_template(corpus), "workers": 4},
        "train": {"width": 0.125, "epochs": 1, "batch_size": 8, "val_fraction": 0.2, "test_fraction": 0.25,
                  "random_crops": False},
        "serve": {"port": port},
    }))
    env = cli_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))

    def script(name: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, name], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{name}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        return proc

    assert "labelled 7 good + 7 not-good" in script("create_labels.py").stdout
    assert "download: done" in script("download_data.py").stdout
    assert "process: done" in script("process_audio.py").stdout
    script("train.py")
    store = work / "data"
    run_id = (store / "runs" / "latest").read_text().strip()
    assert (store / "runs" / run_id / "model.keras").is_file()

    server = subprocess.Popen([sys.executable, "server.py"], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        health = wait_until_healthy(f"http://127.0.0.1:{port}", server)
        assert health["run_id"] == run_id and health["model"]["synthetic_demo"] is True
        audio = sorted((store / "audio").glob("*.mp3"))[0]
        shutil.copy(audio, work / "audio.mp3")
        status, body = post_like_curl(f"http://localhost:{port}/predict", work / "audio.mp3")
    finally:
        stop(server)
    assert status == 200, body
    answer = json.loads(body)
    assert 0.0 <= answer["score"] <= 100.0 and answer["label"] in ("good", "not-good")
    assert answer["run_id"] == run_id and answer["model"]["run_id"] == run_id
