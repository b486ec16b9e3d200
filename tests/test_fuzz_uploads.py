"""Fuzzing the real servers with a seeded corpus of hostile and damaged uploads.

The corpus is made here, the same for every run: truncations, bit flips, block damage,
random bytes, formats renamed, crafted WAV headers, playlists, odd file names and malformed
multipart bodies, about 200 requests in all. Each server (Flask's, as ``deepcurator serve``
starts it, and gunicorn with the shipped configuration) must answer every one with a 200, 400
or 413 in JSON, within the configured limits, drop no connection, leave no temp file and keep
its memory bounded.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from deepcurator.demo.pipeline import free_port
from deepcurator.demo.server_process import stop, wait_until_healthy

from tests.helpers.audio import make_audio
from tests.helpers.cli import cli_env

DECODE_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 5.0
MAX_UPLOAD_MB = 4
ANSWER_WITHIN_S = DECODE_TIMEOUT_S + READ_TIMEOUT_S + 5.0  # slowest legitimate answer, with margin
RSS_GROWTH_LIMIT_MB = 400


@dataclass
class Case:
    """One request: multipart ``files`` (field -> (name, bytes)) and ``data`` fields, or a raw
    ``body`` with its ``content_type``."""

    label: str
    files: dict[str, tuple[str, bytes]] | None = None
    data: dict[str, str] | None = None
    body: bytes | None = None
    content_type: str = ""


def wav_header(channels: int, rate: int, bits: int, data_size: int, fmt_tag: int = 1, riff_size: int | None = None,
               fmt_size: int = 16) -> bytes:
    """A RIFF/WAVE header with any field, consistent or not."""
    block_align = channels * bits // 8 if channels and bits else 0
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate & 0xFFFFFFFF, (rate * block_align) & 0xFFFFFFFF,
                      block_align & 0xFFFF, bits)
    fmt = fmt[:fmt_size].ljust(fmt_size, b"\0")
    riff = riff_size if riff_size is not None else 4 + 8 + fmt_size + 8 + data_size
    return b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt + \
        b"data" + struct.pack("<I", data_size & 0xFFFFFFFF)


def corpus(folder: Path, secret: Path) -> list[Case]:
    """The seeded fuzz corpus (about 200 cases)."""
    rng = np.random.default_rng(20261202)
    bases = {
        "mp3": make_audio(folder / "a.mp3", 40.0, sr=22050, channels=1, seed=1).read_bytes(),
        "wav": make_audio(folder / "b.wav", 32.0, sr=22050, channels=1, seed=2).read_bytes(),
        "flac": make_audio(folder / "c.flac", 31.0, sr=22050, channels=1, seed=3).read_bytes(),
        "ogg": make_audio(folder / "d.ogg", 31.0, sr=22050, channels=1, seed=4).read_bytes(),
        "m4a": make_audio(folder / "e.m4a", 31.0, sr=22050, channels=1, seed=5).read_bytes(),
    }
    cases = [Case(f"clean {k}", files={"audio": (f"x.{k}", v)}) for k, v in bases.items()]
    for kind, data in bases.items():
        for cut in rng.integers(1, len(data), 6):  # truncations, from header-only to nearly whole
            cases.append(Case(f"{kind} cut at {cut}", files={"audio": (f"t.{kind}", data[:cut])}))
        for n_flips in (1, 10, 100, 1000):
            d = bytearray(data)
            for i in rng.integers(0, len(d), n_flips):
                d[i] ^= 1 << int(rng.integers(0, 8))
            cases.append(Case(f"{kind} {n_flips} bit flips", files={"audio": (f"f.{kind}", bytes(d))}))
        for fill in (b"\0", b"\xff", None):
            d = bytearray(data)
            at, size = int(rng.integers(0, len(d) // 2)), int(rng.integers(512, 65536))
            d[at:at + size] = rng.bytes(size) if fill is None else fill * size
            cases.append(Case(f"{kind} block damage {fill!r}", files={"audio": (f"b.{kind}", bytes(d[:len(data)]))}))
        for other in ("mp3", "wav", "txt", ""):  # renamed
            cases.append(Case(f"{kind} named .{other}", files={"audio": (f"r.{other}", data)}))
    for size in (1, 2, 16, 100, 1000, 10_000, 100_000, 1_000_000):
        cases.append(Case(f"{size} random bytes", files={"audio": ("noise.mp3", rng.bytes(size))}))
    pcm = (np.sin(np.arange(22050 * 31) * 0.05) * 8000).astype("<i2").tobytes()
    headers = {
        "huge data size": wav_header(1, 22050, 16, 0xFFFFFFF0),
        "zero channels": wav_header(0, 22050, 16, len(pcm)),
        "zero rate": wav_header(1, 0, 16, len(pcm)),
        "absurd rate": wav_header(1, 2_000_000_000, 16, len(pcm)),
        "65535 channels": wav_header(65535, 22050, 16, len(pcm)),
        "7-bit samples": wav_header(1, 22050, 7, len(pcm)),
        "64-bit int": wav_header(1, 22050, 64, len(pcm)),
        "float tag, 16 bits": wav_header(1, 22050, 16, len(pcm), fmt_tag=3),
        "unknown codec tag": wav_header(1, 22050, 16, len(pcm), fmt_tag=0x1234),
        "riff size 0": wav_header(1, 22050, 16, len(pcm), riff_size=0),
        "short fmt": wav_header(1, 22050, 16, len(pcm), fmt_size=8),
        "huge fmt": wav_header(1, 22050, 16, len(pcm), fmt_size=0x7FFFFFFF),
        "data size 0": wav_header(1, 22050, 16, 0),
    }
    for name, head in headers.items():
        cases.append(Case(f"wav header: {name}", files={"audio": ("h.wav", head + pcm)}))
    lists = {
        "hls": f"#EXTM3U\n#EXT-X-TARGETDURATION:40\n#EXTINF:40,\n{secret}\n#EXT-X-ENDLIST\n",
        "hls file url": f"#EXTM3U\n#EXTINF:40,\nfile:{secret}\n#EXT-X-ENDLIST\n",
        "hls http": "#EXTM3U\n#EXTINF:40,\nhttp://127.0.0.1:9/x.mp3\n#EXT-X-ENDLIST\n",
        "m3u": f"{secret}\n",
        "concat": f"ffconcat version 1.0\nfile {secret}\n",
        "concat relative": "ffconcat version 1.0\nfile ../../../../etc/passwd\n",
        "sdp": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 9 RTP/AVP 0\n",
    }
    for name, text in lists.items():
        for suffix in (".m3u8", ".txt", ".mp3"):
            cases.append(Case(f"playlist {name}{suffix}", files={"audio": (f"list{suffix}", text.encode())}))
    for filename in ("../../../etc/passwd", "a\r\nb.mp3", "ü" * 300 + ".mp3", "", ".mp3", "x.mp3\0.m3u8",
                     "CON", "a" * 5000, "%2e%2e%2fx.mp3", "subfile,,start,0,end,0,,:x.mp3", "pipe:0",
                     "file:/etc/passwd"):
        cases.append(Case(f"file name {filename[:20]!r}", files={"audio": (filename, bases["mp3"])}))
    boundary = "fuzzBOUNDARY"
    ct = f"multipart/form-data; boundary={boundary}"
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="x.mp3"\r\n\r\n'.encode()
    raw = {
        "no closing boundary": part + bases["mp3"],
        "no headers": f"--{boundary}\r\n\r\n".encode() + bases["mp3"] + f"\r\n--{boundary}--\r\n".encode(),
        "empty body": b"",
        "only a boundary": f"--{boundary}--\r\n".encode(),
        "garbage": rng.bytes(5000),
        "two audio fields": part + bases["wav"] + b"\r\n" + part + bases["mp3"] + f"\r\n--{boundary}--\r\n".encode(),
        "header without colon": f"--{boundary}\r\nnonsense\r\n\r\nabc\r\n--{boundary}--\r\n".encode(),
        "very long header": f"--{boundary}\r\nX: {'a' * 100000}\r\n\r\nabc\r\n--{boundary}--\r\n".encode(),
    }
    for name, body in raw.items():
        cases.append(Case(f"multipart {name}", body=body, content_type=ct))
    cases.append(Case("multipart without boundary", body=part, content_type="multipart/form-data"))
    cases.append(Case("urlencoded", body=b"audio=abc", content_type="application/x-www-form-urlencoded"))
    cases.append(Case("json", body=b'{"audio": 1}', content_type="application/json"))
    cases.append(Case("many parts", files={"audio": ("x.mp3", bases["mp3"])}, data={f"f{i}": "1" for i in range(200)}))
    cases.append(Case("big text field", files={"audio": ("x.mp3", bases["mp3"])}, data={"note": "x" * 600_000}))
    cases.append(Case("over the size limit", files={"audio": ("x.wav", bases["wav"] * 5)}))
    return cases


def send(url: str, case: Case) -> tuple[int, dict]:
    """Send ``case``; the status and the JSON answer. A dropped connection raises."""
    if case.body is None:
        r = requests.post(f"{url}/predict", files=case.files, data=case.data, timeout=ANSWER_WITHIN_S + 30)
        return r.status_code, r.json()
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=ANSWER_WITHIN_S + 30) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: {case.content_type}\r\n"
                     f"Content-Length: {len(case.body)}\r\n\r\n".encode() + case.body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def tree_rss_mb(proc: subprocess.Popen) -> float:
    """Resident memory of ``proc`` and its children, MB."""
    root = psutil.Process(proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 1e6


@pytest.fixture(params=["flask", "gunicorn"])
def live_server(request: pytest.FixtureRequest, tiny_model: Path, tmp_path: Path
                ) -> Iterator[tuple[str, subprocess.Popen, Path]]:
    """The server as a user starts it, with its own temp folder."""
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    port = free_port()
    env = cli_env(DEEPCURATOR_SERVE_MODEL=str(tiny_model), DEEPCURATOR_STORE_PATH=str(tmp_path / "store"),
                  DEEPCURATOR_SERVE_PORT=str(port), DEEPCURATOR_SERVE_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB),
                  DEEPCURATOR_SERVE_DECODE_TIMEOUT_S=str(DECODE_TIMEOUT_S),
                  DEEPCURATOR_SERVE_READ_TIMEOUT_S=str(READ_TIMEOUT_S), TMPDIR=str(tmp),
                  DEEPCURATOR_GUNICORN_WORKERS="1")
    if request.param == "flask":
        cmd = [sys.executable, "-m", "deepcurator", "serve"]
    else:
        cmd = [str(Path(sys.executable).with_name("gunicorn")), "-c", "python:deepcurator.serving.gunicorn_conf",
               "deepcurator.serving.wsgi:app"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, proc)
        yield url, proc, tmp
    finally:
        stop(proc)


@pytest.mark.slow
def test_fuzzed_uploads(live_server: tuple[str, subprocess.Popen, Path],
                        tmp_path_factory: pytest.TempPathFactory) -> None:
    url, proc, tmp = live_server
    folder = tmp_path_factory.mktemp("fuzz")
    secret = make_audio(folder / "secret.mp3", 40.0)
    cases = corpus(folder, secret)
    assert len(cases) >= 150
    send(url, cases[0])  # warm: the first answer allocates the decoder's and the model's buffers
    baseline = tree_rss_mb(proc)
    before = sorted(p.name for p in tmp.iterdir())  # TensorFlow's own (autograph) files from the start
    assert not [name for name in before if name.startswith("deepcurator-upload-")]  # gunicorn's metrics folder is there
    statuses: Counter[int] = Counter()
    slowest = 0.0
    for case in cases:
        started = time.monotonic()
        try:
            status, body = send(url, case)
        except (requests.RequestException, OSError, http.client.HTTPException, json.JSONDecodeError) as exc:
            pytest.fail(f"{case.label}: no JSON answer ({type(exc).__name__}: {exc})")
        elapsed = time.monotonic() - started
        slowest = max(slowest, elapsed)
        assert status in (200, 400, 413), (case.label, status, body)
        assert body.get("status", 200) == status, (case.label, body)
        if status == 200:
            assert 0 <= body["score"] <= 100 and body["slices"], (case.label, body)
            assert not case.label.startswith("playlist"), (case.label, body)  # never scores another file
        else:
            assert body["error"] and "\n" not in body["error"], (case.label, body)
        assert elapsed < ANSWER_WITHIN_S, (case.label, elapsed)
        statuses[status] += 1
    assert proc.poll() is None
    assert requests.get(f"{url}/health", timeout=10).status_code == 200
    assert sorted(p.name for p in tmp.iterdir()) == before  # no temp file left
    growth = tree_rss_mb(proc) - baseline
    assert growth < RSS_GROWTH_LIMIT_MB, f"memory grew by {growth:.0f} MB over {len(cases)} uploads"
    assert statuses[200] >= 10 and statuses[400] >= 50 and statuses[413] >= 2, statuses
    print(f"{len(cases)} uploads: {dict(statuses)}, slowest {slowest:.2f} s, RSS growth {growth:.0f} MB")
