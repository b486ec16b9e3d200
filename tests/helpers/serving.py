"""Test helpers for the serving side: a tiny model published as a run in a store (as the
trainer writes it), real audio files (good and broken), and the real server on a port.
The session fixtures built from them (``tiny_model``, ``audio_set``, ``tiny_scorer``) are in
:mod:`tests.helpers.fixtures`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from deepcurator.store import Store

from tests.helpers.audio import make_audio

if TYPE_CHECKING:
    from flask import Flask


RUN_ID = "20260101-000000-test"


def build_tiny_model(path: Path) -> Path:
    """A width-0.125 CNN with fixed random weights saved as ``path`` (a .keras file)."""
    import keras

    from deepcurator.training.model import build_model

    keras.utils.set_random_seed(3)
    model = build_model(width=0.125)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def publish_run(store: Store, model_file: Path, run_id: str = RUN_ID) -> str:
    """Store ``model_file`` as runs/<run_id>/model.keras and point runs/latest at it."""
    store.put_file(f"runs/{run_id}/model.keras", model_file)
    store.put_bytes(f"runs/{run_id}/metrics.json", b'{"run_id": "%s"}' % run_id.encode())
    store.put_bytes("runs/latest", f"{run_id}\n".encode())
    return run_id


def make_audio_set(folder: Path) -> dict[str, Path]:
    """Real files for the error cases: a 95-s mp3 (3 slices), a 65-s stereo wav, a 10-s mp3,
    a truncated mp3 (its first 2 KB), a text file named .mp3 and an empty file."""
    files = {
        "mp3": make_audio(folder / "track.mp3", 95.0, freq=330.0),
        "wav": make_audio(folder / "song.wav", 65.0, freq=180.0),
        "short": make_audio(folder / "short.mp3", 10.0),
    }
    files["truncated"] = folder / "truncated.mp3"
    files["truncated"].write_bytes(files["mp3"].read_bytes()[:2048])
    files["text"] = folder / "notes.mp3"
    files["text"].write_text("these are not sounds\n" * 200)
    files["empty"] = folder / "empty.mp3"
    files["empty"].write_bytes(b"")
    return files


@contextmanager
def running_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server on a free loopback port; yield its URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
