"""The offline demo: every stage of the real pipeline on a generated corpus.

A folder of synthesised tracks plays the part of YouTube (reached by yt-dlp through
``file://`` URLs) and its ``dataset.csv`` the part of Discogs. Each stage runs as the same
command a user types (``python -m deepcurator <stage>``), with a demo ``config.yml``
written under the work folder, so what the demo shows is exactly what a real run does.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deepcurator.errors import DeepCuratorError
from deepcurator.shipped import DEMO_SOURCE

Report = Callable[[str], None]  # where the demo's lines go (the command passes print)


@dataclass(frozen=True)
class DemoSettings:
    """What the demo builds; the defaults are the ones `make demo` uses."""

    workdir: Path = Path("demo")
    tracks: int = 300
    seed: int = 7
    epochs: int = 16
    width: float = 0.5
    head: str = "global_max"  # the corpus' faults are local (bench/RESULTS.md, "Demo corpus")
    label_fraction: float = 0.3  # N = label_fraction × tracks ids per class
    serve: bool = False
    model_dir: Path = Path("model")  # where the trained model is exported (served when a store has no run)


def demo_config(s: DemoSettings) -> dict[str, Any]:
    """The configuration of a demo run: a local store under the work folder, the corpus as
    the download source, a narrow model for a few epochs (plain data, as in config.yml)."""
    from deepcurator.demo.corpus import url_template

    corpus = (s.workdir / "corpus").absolute()
    return {
        "store": {"path": str((s.workdir / "store").absolute())},
        "labels": {"dataset": str(corpus / "dataset.csv"), "data_source": DEMO_SOURCE,
                   "n": max(4, round(s.label_fraction * s.tracks))},
        "download": {"url_template": url_template(corpus), "workers": 4},
        # Chosen on the validation split (bench/RESULTS.md, "Demo"): on 1-4 slices a track, random
        # crops slowed learning more than they regularised within a few epochs. The global_max head
        # and 300 tracks (180 labelled): the flatten head did not learn the corpus of issue 13.
        "train": {"width": s.width, "head": s.head, "epochs": s.epochs, "batch_size": 16, "patience": 6,
                  "seed": s.seed, "val_fraction": 0.2, "test_fraction": 0.25, "random_crops": False},
    }


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _banner(report: Report, step: int, total: int, text: str) -> None:
    report(f"\n\033[1m== [{step}/{total}] {text}\033[0m")


def run_command(args: list[str], config_path: Path, cwd: Path) -> None:
    """Run ``deepcurator ARGS`` as a user would, its progress and summary shown live."""
    env = dict(os.environ, DEEPCURATOR_CONFIG=str(config_path))
    proc = subprocess.run([sys.executable, "-m", "deepcurator", *args], cwd=cwd, env=env, check=False)
    if proc.returncode != 0:
        raise DeepCuratorError(f"stage `deepcurator {' '.join(args)}` failed with status {proc.returncode}")


def held_out_track(store_root: Path, run_dir: Path) -> tuple[str, int, Path]:
    """A track of the run's test split (never trained on): its id, label and audio file."""
    import pandas as pd

    splits = pd.read_csv(run_dir / "splits.csv", dtype={"youtube_id": str})
    test = splits[splits["split"] == "test"].sort_values("youtube_id")
    if test.empty:
        raise DeepCuratorError(f"the run {run_dir.name} has no test split")
    for youtube_id, label in zip(test["youtube_id"], test["label"], strict=True):
        matches = sorted((store_root / "audio").glob(f"{youtube_id}.*"))
        if matches:
            return youtube_id, int(label), matches[0]
    raise DeepCuratorError("no audio of a test-split track is in the store")


def start_server(config_path: Path, cwd: Path, port: int) -> subprocess.Popen[bytes]:
    """Start ``deepcurator serve`` on a loopback port and wait until /health answers."""
    from deepcurator.demo.server_process import wait_until_healthy

    env = dict(os.environ, DEEPCURATOR_CONFIG=str(config_path), DEEPCURATOR_SERVE_PORT=str(port),
               DEEPCURATOR_SERVE_HOST="127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "serve"], cwd=cwd, env=env)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", proc)
    except DeepCuratorError:
        proc.kill()
        raise
    return proc

def run_demo(s: DemoSettings, report: Report) -> int:
    """Run the whole demo, telling the user what happens through ``report`` (the command
    passes ``print``: stages run as subprocesses that show their own progress); returns the
    exit status."""
    import requests

    from deepcurator.demo.server_process import stop

    started = time.monotonic()
    workdir = s.workdir.absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.yml"
    config_path.write_text(yaml.safe_dump(demo_config(s), sort_keys=False))
    cfg = yaml.safe_load(config_path.read_text())
    store_root = Path(cfg["store"]["path"])
    corpus = workdir / "corpus"
    model_dir = s.model_dir.absolute()
    total = 8
    report(f"DeepCurator demo: {s.tracks} synthetic tracks, everything offline, in {workdir}")
    report(f"configuration: {config_path}")

    _banner(report, 1, total,
            "demo-corpus: synthesise the tracks (the part of YouTube) and dataset.csv (the part of Discogs)")
    run_command(["demo-corpus", "--out", str(corpus), "--tracks", str(s.tracks), "--seed", str(s.seed)],
                config_path, workdir)
    from deepcurator.demo.corpus import contrast_pictures

    pictures = contrast_pictures(corpus, workdir)
    report("log-mel pictures of a high-q and a low-q track: " + ", ".join(str(p) for p in pictures))

    _banner(report, 2, total, "labels: score the Discogs items, label the top and bottom N")
    run_command(["labels"], config_path, workdir)
    _banner(report, 3, total, "download: yt-dlp + ffmpeg from the corpus' file:// URLs to mp3")
    run_command(["download"], config_path, workdir)
    _banner(report, 4, total, "process: decode and compute the log-mel features")
    run_command(["process"], config_path, workdir)
    _banner(report, 5, total,
            "train: the CNN, best checkpoint by validation ROC-AUC, then evaluation on the test split")
    run_command(["train"], config_path, workdir)
    run_id = (store_root / "runs" / "latest").read_text().strip()
    run_dir = store_root / "runs" / run_id
    _banner(report, 6, total, f"evaluate: re-evaluate the saved run {run_id} from the store")
    run_command(["evaluate", run_id], config_path, workdir)
    metrics = json.loads((run_dir / "metrics.json").read_text())

    _banner(report, 7, total, f"export: the model into {model_dir}, served when a store has no run of its own")
    exported = export_model(run_id, model_dir, config_path, workdir, report)

    _banner(report, 8, total, "serve: start the server, POST a held-out track to /predict")
    _youtube_id, label, audio = held_out_track(store_root, run_dir)
    port = free_port()
    server = start_server(config_path, workdir, port)
    try:
        url = f"http://127.0.0.1:{port}/predict"
        report(f"$ curl -X POST -F audio=@{audio} {url}")
        with open(audio, "rb") as fh:
            answer = requests.post(url, files={"audio": (audio.name, fh)}, timeout=120)
        body = answer.json()
        shown = {k: v for k, v in body.items() if k != "slices"}
        report(json.dumps(shown, indent=2))
        report(f"({len(body.get('slices', []))} slices scored; "
               f"the track's true label is {'good' if label else 'not-good'})")
        if s.serve:
            report(f"\nThe server is running: open http://127.0.0.1:{port}/ to rate a file. Ctrl-C stops it.")
            server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop(server)

    from deepcurator.summary import summary_lines

    report(f"\n\033[1mDemo finished\033[0m in {time.monotonic() - started:.0f} s")
    report("  test split, track level, 95 % bootstrap intervals (a synthetic corpus: see the model card):")
    for line in summary_lines(metrics):
        report(f"    {line}")
    report(f"  model card: {run_dir / 'MODEL_CARD.md'}")
    if exported:
        report(f"  the model:  exported to {model_dir}: `python server.py` (or `deepcurator serve`) serves it when "
               "the store has no run of its own")
    report(f"  plots:      {', '.join(sorted(p.name for p in run_dir.glob('*.png')))} in {run_dir}")
    report("  spectrograms of a high-q and a low-q track: " + ", ".join(str(p) for p in pictures))
    report(f"  the store:  {store_root}  (rerun `make demo` to resume; delete {workdir} to start over)")
    return 0


def export_model(run_id: str, model_dir: Path, config_path: Path, cwd: Path, report: Report) -> bool:
    """``deepcurator export RUN --to MODEL_DIR``, unless ``model_dir`` holds a model trained on
    real data (the demo's synthetic one never replaces it; said through ``report``). Returns
    whether the model was exported."""
    from deepcurator.shipped import read_model_info

    held = read_model_info(model_dir)
    if held and held.get("synthetic_demo") is False:
        report(f"{model_dir} holds run {held.get('run_id')}, trained on {held.get('trained_on')}: the demo's model "
               "does not replace it (`deepcurator export --force` would)")
        return False
    run_command(["export", run_id, "--to", str(model_dir)], config_path, cwd)
    return True


def clean(workdir: Path) -> None:
    """Remove a demo's work folder."""
    if workdir.exists():
        shutil.rmtree(workdir)
