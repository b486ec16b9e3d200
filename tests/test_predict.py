"""Model resolution, aggregation, streamed features (bit-identical to the process stage's)
and scoring: the same numbers as the model on features.model_input of the same file."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from deepcurator import audio, features, shipped
from deepcurator.config import Config, from_dict
from deepcurator.errors import ConfigError, TooLong
from deepcurator.scores import aggregate
from deepcurator.serving.scoring import ModelSource, Scorer, TooShort, resolve_model, score_file
from deepcurator.store import open_store
from deepcurator.stream import SliceStream

from tests.helpers.audio import make_audio
from tests.helpers.cli import run_cli, write_config
from tests.helpers.serving import RUN_ID, publish_run


def reference_input(path: Path) -> np.ndarray:
    """The process stage's definition: model_input(logmel(decode(file)))."""
    return features.model_input(features.logmel(audio.decode(path)))


def test_aggregations() -> None:
    s = np.array([0.1, 0.9, 0.4, 0.8, 0.3])
    assert aggregate(s, "mean") == pytest.approx(0.5)
    assert aggregate(s, "median") == pytest.approx(0.4)
    assert aggregate(s, "topk", top_k=2) == pytest.approx(0.85)
    assert aggregate(s, "topk", top_k=50) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        aggregate(np.array([]), "mean")


def test_model_from_runs_latest_and_run_id(cfg: Config, tiny_model: Path, tmp_path: Path) -> None:
    """runs/latest and runs/<id> in the store (local folder and S3), as the trainer writes them."""
    cfg.serve.model_cache_dir = str(tmp_path / "cache")
    publish_run(open_store(cfg), tiny_model, "older-run")
    publish_run(open_store(cfg), tiny_model, RUN_ID)
    latest = resolve_model(cfg)
    assert latest.run_id == RUN_ID and latest.path.is_file()
    assert latest.path.read_bytes() == tiny_model.read_bytes()
    assert resolve_model(cfg, "runs/older-run").run_id == "older-run"


def test_no_model_is_one_line_saying_how_to_get_one(cfg: Config, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no exported model/ to fall back on, here or in the project
    monkeypatch.setattr(shipped, "project_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match="deepcurator train") as err:
        resolve_model(cfg)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model(cfg, str(tmp_path / "nope.keras"))
    with pytest.raises(ConfigError, match="not runs/latest"):
        resolve_model(cfg, "model.h5")


def test_serve_without_a_model_refuses_to_start(tmp_path: Path) -> None:
    config = write_config(from_dict({"store": {"path": str(tmp_path / "empty")}}), tmp_path / "config.yml")
    proc = run_cli("--config", str(config), "serve", "--port", "1", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "deepcurator train" in lines[0] and "make demo" in lines[0], proc.stderr


def test_model_from_http_url_and_s3_url(s3_endpoint: str, tiny_model: Path, tmp_path: Path) -> None:
    """An http:// URL (a real HTTP server on loopback) and an s3:// URL are downloaded once."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tiny_model.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cfg = from_dict({"serve": {"model_cache_dir": str(tmp_path / "cache")},
                     "s3": {"bucket": "models", "endpoint_url": s3_endpoint, "region": "us-east-1",
                            "access_key": "testing", "secret": "testing"}})
    try:
        src = resolve_model(cfg, f"http://127.0.0.1:{httpd.server_port}/model.keras")
        assert src.path.read_bytes() == tiny_model.read_bytes()
        with pytest.raises(ConfigError, match="HTTP 404"):
            resolve_model(cfg, f"http://127.0.0.1:{httpd.server_port}/missing.keras")
    finally:
        httpd.shutdown()
    assert resolve_model(cfg, f"http://127.0.0.1:{httpd.server_port}/model.keras").path == src.path  # cached
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="models")
    s3.upload_file(str(tiny_model), "models", "team/best.keras")
    src = resolve_model(cfg, "s3://models/team/best.keras")
    assert src.run_id == "best" and src.path.read_bytes() == tiny_model.read_bytes()


def test_streamed_slices_are_bit_identical(audio_set: dict[str, Path]) -> None:
    for name in ("mp3", "wav"):  # both decoders
        ref = reference_input(audio_set[name])
        stream = SliceStream(audio_set[name])
        got = list(stream)
        assert len(got) == ref.shape[0] >= 2
        for k, x in enumerate(got):
            assert x.dtype == np.float32 and x.shape == ref.shape[1:]
            assert np.array_equal(x, ref[k]), f"{name} slice {k} differs"
        assert stream.n_samples == audio.decode(audio_set[name]).size


@pytest.mark.parametrize("block", [22050, 30 * 22050, 287, 661_000])
def test_slices_do_not_depend_on_how_the_samples_arrive(audio_set: dict[str, Path], block: int) -> None:
    y = audio.decode(audio_set["mp3"])
    ref = features.model_input(features.logmel(y))
    stream = SliceStream(audio_set["mp3"])
    got = list(stream.slices(y[i: i + block] for i in range(0, y.size, block)))
    assert len(got) == ref.shape[0] and all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))
    assert stream.n_samples == y.size


def test_a_damaged_mp3_streams_as_the_stage_decodes_it(audio_set: dict[str, Path], tmp_path: Path) -> None:
    """mpg123 gives up on the damage and ffmpeg finishes the track: the same samples either way."""
    data = bytearray(audio_set["mp3"].read_bytes())
    data[len(data) // 2: len(data) // 2 + 20_000] = np.random.default_rng(0).bytes(20_000)
    path = tmp_path / "damaged.mp3"
    path.write_bytes(bytes(data))
    assert audio.decode(path).size > 92 * audio.SAMPLE_RATE  # of 95 s; mpg123 alone stops half-way
    ref = reference_input(path)
    assert all(np.array_equal(a, b) for a, b in zip(SliceStream(path), ref, strict=True))


@pytest.mark.parametrize("frames", [1291, 1292, 2 * 1291 - 1, 2 * 1291, 2 * 1291 + 3])
def test_streamed_slices_at_the_track_end(tmp_path: Path, frames: int) -> None:
    """Lengths around slice boundaries, where the last slice's frames reach into the STFT's
    end padding: mono 22,050 Hz wavs with exactly the samples that give ``frames`` frames."""
    n = (frames - 1) * features.HOP + 7
    path = make_audio(tmp_path / "edge.wav", n / audio.SAMPLE_RATE, sr=audio.SAMPLE_RATE, channels=1)
    ref = reference_input(path)
    got = list(SliceStream(path))
    assert len(got) == ref.shape[0] == frames // 1291
    assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True))


def test_score_is_the_mean_of_the_model_on_the_process_features(audio_set: dict[str, Path], tiny_model: Path,
                                                                tiny_scorer: Scorer) -> None:
    import keras

    x = reference_input(audio_set["mp3"])
    per_slice = keras.saving.load_model(tiny_model).predict(x, verbose=0).ravel()
    result = score_file(tiny_scorer, audio_set["mp3"])
    assert len(result.slices) == 3
    assert result.score == pytest.approx(100 * per_slice.mean(), abs=1e-3)
    assert [s for _, _, s in result.slices] == pytest.approx(100 * per_slice, abs=1e-3)
    assert result.slices[1][:2] == pytest.approx((29.98, 59.95), abs=0.01)
    assert result.duration_s == pytest.approx(95.0, abs=0.1)
    assert result.label == ("good" if result.score > 50 else "not-good")
    median = Scorer(ModelSource(tiny_model, "m"), aggregation="median")
    assert score_file(median, audio_set["mp3"]).score == pytest.approx(100 * np.median(per_slice), abs=1e-3)


def test_too_short_too_long_truncate_and_undecodable(audio_set: dict[str, Path], tiny_scorer: Scorer) -> None:
    with pytest.raises(TooShort, match=r"10\.0 s"):
        score_file(tiny_scorer, audio_set["short"])
    with pytest.raises(TooLong, match="60 s"):
        score_file(tiny_scorer, audio_set["mp3"], max_duration_s=60)
    cut = score_file(tiny_scorer, audio_set["mp3"], max_duration_s=60, over_duration="truncate")
    assert cut.truncated and len(cut.slices) == 2 and cut.duration_s == pytest.approx(60, abs=0.1)
    for name in ("text", "truncated", "empty"):
        with pytest.raises((audio.DecodeError, TooShort)):
            score_file(tiny_scorer, audio_set[name])
    with pytest.raises(audio.DecodeTimeoutError, match="longer than"):
        score_file(tiny_scorer, audio_set["mp3"], decode_timeout=0.001)
