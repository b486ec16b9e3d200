"""What the benchmarks share, independent of tests/: generated audio and a media server.

Import it from a bench script (its folder is ``sys.path[0]`` when run as
``python bench/bench_x.py``) after putting the repository root on ``sys.path``:

    from _common import make_audio, MediaServer

- :func:`make_audio`: music-like audio made by the real ffmpeg: a four-note chord with a slow
  tremolo over pink noise, the same recipe and the same bytes as the test suite's audio, so
  the figures in bench/RESULTS.md stay comparable;
- :class:`MediaServer`: ``GET /media/<id>`` serves ``<root>/<id>.<ext>`` on a free loopback
  port, optionally after a fixed latency (a distant server).
"""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from deepcurator.audio import ffmpeg_exe

CODECS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    ".flac": ["-c:a", "flac"],
    ".wav": ["-c:a", "pcm_s16le"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
}

TYPES = {".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".ogg": "audio/ogg", ".flac": "audio/flac", ".wav": "audio/wav"}


def make_audio(path: Path, seconds: float, sr: int = 44100, channels: int = 2, freq: float = 220.0,
               noise: str = "pink", seed: int = 0) -> Path:
    """Write ``seconds`` of audio to ``path`` (format from its suffix: one of :data:`CODECS`)
    and return ``path``: a four-note chord on ``freq`` over ``noise``-coloured noise."""
    tones = "+".join(f"0.15*sin(2*PI*{f:.2f}*t)" for f in (freq, freq * 1.25, freq * 1.5, freq * 2.01))
    src = f"aevalsrc='({tones})*(0.6+0.4*sin(2*PI*0.5*t))|({tones})*(0.6+0.4*cos(2*PI*0.5*t))':s={sr}:d={seconds}"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-t", str(seconds),
           "-i", src, "-f", "lavfi", "-t", str(seconds), "-i", f"anoisesrc=c={noise}:a=0.02:r={sr}:seed={seed}",
           "-filter_complex", "[0][1]amix=inputs=2:normalize=0",
           "-ac", str(channels), "-ar", str(sr), *CODECS[path.suffix], str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True)
    return path


class MediaServer:
    """Serves the audio files of ``root`` as ``/media/<id>`` on a free loopback port, each
    answer after ``latency_s`` seconds; 404 for an id without a file. A context manager:
    ``with MediaServer(root) as srv: srv.url_template``."""

    def __init__(self, root: Path, latency_s: float = 0.0) -> None:
        self.root = Path(root)
        self.latency_s = latency_s
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.respond(body=False)

            def do_GET(self) -> None:
                self.respond(body=True)

            def respond(self, body: bool) -> None:
                if server.latency_s:
                    server._stop.wait(server.latency_s)
                item_id = self.path.split("?")[0].rsplit("/", 1)[-1]
                files = sorted(server.root.glob(f"{item_id}.*")) if self.path.startswith("/media/") else []
                if not files:
                    self.send_error(404, "Not Found")
                    return
                data = files[0].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", TYPES.get(files[0].suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients that hang up are not errors here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/media/{{id}}"

    def __enter__(self) -> MediaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
