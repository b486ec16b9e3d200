"""Hostile uploads and damaged audio, against the real decoders and the real servers (Flask's
and gunicorn's as the README starts it): the server reads nothing but the upload, a damaged
file loses only its damage, refusals are answered promptly with their reason, slow clients
stall nobody, the decoder's notes stay out of the log."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from deepcurator import audio, native_stderr
from deepcurator.config import from_dict
from deepcurator.demo.pipeline import free_port
from deepcurator.demo.server_process import stop, wait_until_healthy
from deepcurator.serving.app import create_app
from deepcurator.serving.scoring import Scorer
from deepcurator.stages.process import TrackFailure, track_features

from tests.helpers.audio import make_audio
from tests.helpers.cli import cli_env
from tests.helpers.serving import running_server


@pytest.fixture(scope="module")
def secret_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An audio file on the server's disk that no upload may reach: 40 s of mp3."""
    return make_audio(tmp_path_factory.mktemp("secret") / "secret.mp3", 40.0)


def playlists(target: Path) -> dict[str, bytes]:
    """Small text files that make a permissive ffmpeg open ``target`` (the concat list names
    it relative to the list, so the list must lie beside it)."""
    return {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:40\n#EXTINF:40,\n{target}\n#EXT-X-ENDLIST\n".encode(),
        "hls-file-url": f"#EXTM3U\n#EXT-X-TARGETDURATION:40\n#EXTINF:40,\nfile:{target}\n#EXT-X-ENDLIST\n".encode(),
        "concat": f"ffconcat version 1.0\nfile {target.name}\n".encode(),
    }


def permissive_seconds(path: Path) -> float:
    """Seconds of audio a plain ``ffmpeg -i path`` (no whitelists) decodes from ``path``."""
    out = subprocess.run([audio.ffmpeg_exe(), "-nostdin", "-v", "quiet", "-i", str(path), "-f", "f32le", "-ac", "1",
                          "-ar", "22050", "-"], capture_output=True).stdout
    return len(out) / 4 / 22050


@pytest.fixture
def server(tiny_scorer: Scorer, upload_tmp: Path) -> Iterator[str]:
    cfg = from_dict({"serve": {"max_upload_mb": 2, "max_duration_s": 80, "read_timeout_s": 3}})
    with running_server(create_app(cfg, tiny_scorer)) as url:
        yield url
    assert list(upload_tmp.iterdir()) == []


# -- 1. the server reads nothing but the upload ----------------------------------------------


@pytest.mark.parametrize("kind", ["hls", "hls-file-url", "concat"])
def test_decoder_opens_no_other_file(secret_audio: Path, kind: str) -> None:
    assert audio.decode(secret_audio).size > 39 * audio.SAMPLE_RATE  # the target itself is readable
    for suffix in (".m3u8", ".txt", ""):
        path = secret_audio.parent / f"list-{kind}{suffix}"
        path.write_bytes(playlists(secret_audio)[kind])
        if suffix == ".m3u8" or kind == "concat":
            assert permissive_seconds(path) > 39  # the hole this closes: ffmpeg alone reads the target
        with pytest.raises(audio.DecodeError, match="cannot decode"):
            audio.decode(path)


def test_playlist_upload_is_refused(server: str, secret_audio: Path) -> None:
    for kind, body in playlists(secret_audio).items():
        r = requests.post(f"{server}/predict", files={"audio": ("list.m3u8", body)}, timeout=30)
        assert r.status_code == 400, (kind, r.text)
        assert "not a readable audio file" in r.json()["error"]


def test_file_names_are_not_protocols(tmp_path: Path) -> None:
    """A local name that looks like a URL or a protocol is still a local file."""
    src = make_audio(tmp_path / "a.wav", 31.0)
    odd = tmp_path / "http:x.wav"
    odd.write_bytes(src.read_bytes())
    assert audio.decode(odd).size == audio.decode(src).size


# -- 2. a damaged mp3 loses only its damage --------------------------------------------------


@pytest.fixture(scope="module")
def early_stopping_mp3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A 110-s mp3 with bit flips on which libsndfile's mpg123 stops early without an error,
    and the length ffmpeg decodes from it (seconds)."""
    folder = tmp_path_factory.mktemp("damaged")
    clean = make_audio(folder / "clean.mp3", 110.0, seed=4)
    data = clean.read_bytes()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        damaged = bytearray(data)
        for i in rng.integers(4096, len(damaged), 200):
            damaged[i] ^= 0xFF
        path = folder / f"flipped-{seed}.mp3"
        path.write_bytes(bytes(damaged))
        with sf.SoundFile(path) as f:
            try:
                read = len(f.read())
            except sf.LibsndfileError:
                continue  # an error: the old code handed over already
            if read < 0.8 * f.frames:
                out = subprocess.run(audio.decode_command(path), capture_output=True).stdout
                return path, len(out) / 4 / audio.SAMPLE_RATE
    pytest.fail("no bit-flip pattern made mpg123 stop early; the test cannot show the hand-over")


def test_decoder_hands_over_when_mpg123_stops_early(early_stopping_mp3: tuple[Path, float]) -> None:
    path, ffmpeg_seconds = early_stopping_mp3
    assert ffmpeg_seconds > 100
    y = audio.decode(path)
    assert y.size / audio.SAMPLE_RATE == pytest.approx(ffmpeg_seconds, abs=0.5)
    assert np.isfinite(y).all() and np.abs(y).max() <= audio.MAX_ABS_SAMPLE


def test_process_stage_keeps_all_of_a_damaged_mp3(early_stopping_mp3: tuple[Path, float]) -> None:
    from deepcurator.config import ProcessConfig

    path, ffmpeg_seconds = early_stopping_mp3
    S = track_features(path, ProcessConfig())
    assert S.shape[1] / 43.066 == pytest.approx(ffmpeg_seconds, abs=0.5)
    assert np.isfinite(S).all()


def test_server_scores_all_of_a_damaged_mp3(early_stopping_mp3: tuple[Path, float], tiny_scorer: Scorer,
                                            upload_tmp: Path) -> None:
    path, ffmpeg_seconds = early_stopping_mp3
    cfg = from_dict({"serve": {"max_duration_s": 900}})
    with running_server(create_app(cfg, tiny_scorer)) as url, open(path, "rb") as fh:
        body = requests.post(f"{url}/predict", files={"audio": ("x.mp3", fh)}, timeout=60).json()
    assert body["duration_s"] == pytest.approx(ffmpeg_seconds, abs=0.5)
    assert len(body["slices"]) == int(ffmpeg_seconds // 29.98)


@pytest.mark.slow
def test_healthy_mp3_takes_one_decoder(tmp_path: Path) -> None:
    """The hand-over is for damage only: healthy mp3s, with and without a Xing/LAME header
    (whose frame count is then an estimate), are decoded by mpg123 alone."""
    for name, extra in (("xing.mp3", None), ("noxing.mp3", ["-write_xing", "0"]), ("vbr.mp3", ["-q:a", "4"])):
        path = make_audio(tmp_path / name, 61.3, extra=extra)
        with sf.SoundFile(path) as f:
            seconds = f.frames / f.samplerate
        blocks = audio.decode_chunks(path)
        y = np.concatenate(list(blocks))
        assert y.size / audio.SAMPLE_RATE == pytest.approx(seconds, abs=0.3)
        assert audio.decoder_for(path) == "mpg123"


# -- 7. non-finite audio is refused ----------------------------------------------------------


def float_wav(path: Path, fill: float, seconds: float = 31.0, fraction: float = 1.0, sr: int = 11025) -> Path:
    """A float WAV of a tone with ``fraction`` of its samples replaced by ``fill`` (1.4 MB)."""
    rng = np.random.default_rng(1)
    y = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)
    n = int(fraction * y.size)
    y[rng.permutation(y.size)[:n]] = fill
    sf.write(path, y, sr, subtype="FLOAT")
    return path


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, 1e30])
def test_non_finite_audio_is_refused(tmp_path: Path, server: str, fill: float) -> None:
    for fraction in (1.0, 0.001):
        path = float_wav(tmp_path / "bad.wav", fill, fraction=fraction)
        with pytest.raises(audio.DecodeError, match=r"NaN or infinite|beyond full scale"):
            audio.decode(path)
        from deepcurator.config import ProcessConfig

        with pytest.raises(TrackFailure) as failure:
            track_features(path, ProcessConfig())
        assert failure.value.reason == "undecodable"
        with open(path, "rb") as fh:
            r = requests.post(f"{server}/predict", files={"audio": ("bad.wav", fh)}, timeout=60)
        assert r.status_code == 400 and "not a readable audio file" in r.json()["error"]


# -- 4. refusals are answered promptly, with their reason ------------------------------------


def raw_post(url: str, body: bytes, content_type: str, *, chunked: bool = False,
             declared_length: int | None = None, timeout: float = 10.0) -> tuple[int, dict]:
    """POST ``body`` to ``url``/predict over a plain socket, exactly as given; returns the
    status and the JSON answer. A hang fails at ``timeout`` seconds."""
    import json

    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        head = ["POST /predict HTTP/1.1", f"Host: {host}", f"Content-Type: {content_type}"]
        if chunked:
            head.append("Transfer-Encoding: chunked")
            payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
                               for i in range(0, len(body), 65536)) + b"0\r\n\r\n"
        else:
            head.append(f"Content-Length: {len(body) if declared_length is None else declared_length}")
            payload = body
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            sock.sendall(payload)
        except OSError:
            pass  # the server may answer and close before taking it all: read the answer
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())
    finally:
        sock.close()


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "xyzBOUNDARYxyz") -> bytes:
    out = []
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


MP = "multipart/form-data; boundary=xyzBOUNDARYxyz"
AUDIO_LIKE = bytes(range(256)) * 4096  # 1 MiB of bytes: not audio, under the 2 MB limit


@pytest.mark.parametrize(("case", "status", "needle"), [
    ("text field of 1 MB", 413, "text fields up to"),
    ("1500 parts", 413, "at most 16 parts"),
    ("wrong boundary", 413, "boundary"),
    ("CRLF in the file name", 413, "not one file upload"),
    ("declared 100 MB", 413, "larger than the 2 MB limit"),
    ("chunked 3 MB", 413, "larger than the 2 MB limit"),
    ("chunked, many parts", 413, "at most 16 parts"),
])
def test_refusals_are_prompt_and_say_why(server: str, case: str, status: int, needle: str) -> None:
    started = time.monotonic()
    if case == "text field of 1 MB":
        answer = raw_post(server, multipart([("comment", None, b"x" * 1_000_000), ("audio", "a.mp3", b"ID3")]), MP)
    elif case == "1500 parts":
        answer = raw_post(server, multipart([(f"f{i}", None, b"1") for i in range(1500)]), MP)
    elif case == "wrong boundary":
        answer = raw_post(server, multipart([("audio", "a.mp3", AUDIO_LIKE)], boundary="other"), MP)
    elif case == "CRLF in the file name":
        answer = raw_post(server, multipart([("audio", "a\r\nX-Evil: 1\r\n.mp3", AUDIO_LIKE)]), MP)
    elif case == "declared 100 MB":
        answer = raw_post(server, multipart([("audio", "a.mp3", AUDIO_LIKE)]), MP, declared_length=100_000_000)
    elif case == "chunked 3 MB":
        answer = raw_post(server, multipart([("audio", "a.mp3", AUDIO_LIKE * 3)]), MP, chunked=True)
    else:
        answer = raw_post(server, multipart([(f"f{i}", None, b"1") for i in range(100)]), MP, chunked=True)
    assert time.monotonic() - started < 5.0
    assert answer[0] == status, answer
    assert answer[1]["status"] == status and needle in answer[1]["error"]
    assert requests.get(f"{server}/health", timeout=5).status_code == 200


def test_oversize_chunked_upload_gets_its_413_through_requests(server: str) -> None:
    """A client streaming a chunked body over the limit reads the 413, not a broken pipe."""
    whole = multipart([("audio", "a.mp3", AUDIO_LIKE * 3)])  # 3 MiB

    def body() -> Iterator[bytes]:
        for i in range(0, len(whole), 65536):
            yield whole[i:i + 65536]

    r = requests.post(f"{server}/predict", data=body(), headers={"Content-Type": MP}, timeout=10)
    assert r.status_code == 413 and "larger than the 2 MB limit" in r.json()["error"]


@pytest.mark.slow
def test_a_client_that_stops_sending_is_answered(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {MP}\r\nContent-Length: 500000\r\n\r\n"
                     .encode() + multipart([("audio", "a.mp3", b"x" * 1000)])[:600])
        started = time.monotonic()
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 400 and b"stopped arriving" in response.read()
        assert 2.5 < time.monotonic() - started < 8  # serve.read_timeout_s is 3


# -- 3. slow clients do not stall the production server --------------------------------------


@pytest.fixture
def production_server(tiny_model: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn started as the README says, with the shipped configuration; its log goes to
    ``tmp_path/gunicorn.log``."""
    gunicorn = Path(sys.executable).with_name("gunicorn")
    port = free_port()
    env = cli_env(DEEPCURATOR_SERVE_MODEL=str(tiny_model), DEEPCURATOR_STORE_PATH=str(tmp_path / "store"),
                  DEEPCURATOR_SERVE_PORT=str(port), DEEPCURATOR_SERVE_READ_TIMEOUT_S="20", TMPDIR=str(tmp_path))
    # A file: a pipe nobody reads would block the server.
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed in the finally below, once the server stops
    proc = subprocess.Popen([str(gunicorn), "-c", "python:deepcurator.serving.gunicorn_conf",
                             "deepcurator.serving.wsgi:app"], cwd=tmp_path, env=env, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc)
        yield url, proc
    finally:
        stop(proc)
        log.close()


@pytest.mark.slow
def test_two_stalled_uploads_stall_nobody(production_server: tuple[str, subprocess.Popen], tmp_path: Path) -> None:
    url, _ = production_server
    track = make_audio(tmp_path / "ok.mp3", 40.0)
    host, port = url.removeprefix("http://").split(":")
    stalled = []
    for _ in range(2):
        sock = socket.create_connection((host, int(port)), timeout=30)
        body = multipart([("audio", "a.mp3", track.read_bytes())])
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: {MP}\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body[: len(body) // 2])
        stalled.append(sock)
    time.sleep(1.0)  # both are in the server, half-sent
    try:
        for _ in range(3):
            started = time.monotonic()
            with open(track, "rb") as fh:
                r = requests.post(f"{url}/predict", files={"audio": ("ok.mp3", fh)}, timeout=30)
            assert r.status_code == 200, r.text
            assert time.monotonic() - started < 5.0
    finally:
        for sock in stalled:
            sock.close()


# -- 9. the decoder's notes stay out of the log ----------------------------------------------


@pytest.mark.slow
def test_decoder_notes_are_kept_out_of_the_server_log(production_server: tuple[str, subprocess.Popen],
                                                      early_stopping_mp3: tuple[Path, float],
                                                      tmp_path: Path) -> None:
    url, proc = production_server
    path, _ = early_stopping_mp3
    with open(path, "rb") as fh:
        assert requests.post(f"{url}/predict", files={"audio": ("x.mp3", fh)}, timeout=60).status_code == 200
    stop(proc)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Booting worker" in log  # gunicorn's own lines still get through
    noise = [line for line in log.splitlines() if native_stderr.is_decoder_noise(line.encode())]
    assert noise == []


def test_native_filter_passes_other_lines(tmp_path: Path) -> None:
    """In a fresh process: C-level writes of the decoder are filtered, others and Python's
    own stderr pass, in order."""
    code = (
        "import os, time\n"
        "from deepcurator import native_stderr\n"
        "native_stderr.install()\n"
        "os.write(2, b'Note: Illegal Audio-MPEG-Header 0x0 at offset 1.\\n')\n"
        "os.write(2, b'[src/libmpg123/parse.c:wetwork():1] error: Giving up\\n')\n"
        "os.write(2, b'a native line\\n')\n"
        "import sys; print('a python line', file=sys.stderr)\n"
        "time.sleep(0.5)\n"
        "print(native_stderr.suppressed())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"
    assert "a native line" in proc.stderr and "a python line" in proc.stderr
    assert "Note:" not in proc.stderr and "libmpg123" not in proc.stderr


@pytest.mark.slow
def test_production_server_answers_refusals(production_server: tuple[str, subprocess.Popen]) -> None:
    """Under gunicorn too: an oversize chunked upload reads its 413 (it got a broken pipe
    with sync workers), and the form refusals come back promptly with their reason."""
    url, _ = production_server
    whole = multipart([("audio", "a.mp3", AUDIO_LIKE * 60)])  # 60 MiB, over the default 50 MB

    def body() -> Iterator[bytes]:
        for i in range(0, len(whole), 1 << 20):
            yield whole[i:i + (1 << 20)]

    started = time.monotonic()
    r = requests.post(f"{url}/predict", data=body(), headers={"Content-Type": MP}, timeout=30)
    assert r.status_code == 413 and "larger than the 50 MB limit" in r.json()["error"]
    status, answer = raw_post(url, multipart([(f"f{i}", None, b"1") for i in range(1500)]), MP)
    assert status == 413 and "at most 16 parts" in answer["error"]
    status, answer = raw_post(url, multipart([("audio", "a.mp3", AUDIO_LIKE)]), MP, declared_length=100_000_000)
    assert status == 413 and "larger than the 50 MB limit" in answer["error"]
    assert time.monotonic() - started < 15
