"""Offline stand-ins for the sources the pipeline reads, shared by the tests and the benchmarks.

- :func:`make_audio`: music-like audio made by the real ffmpeg (the imageio-ffmpeg binary): a
  chord of sines with a slow tremolo over a little coloured noise, so that spectra are
  broadband and codecs behave as on music; the same bytes for the same arguments.
- :class:`MediaServer`: a real HTTP server on 127.0.0.1 that plays the part of YouTube (or a
  mirror) for the download stage, misbehaving on purpose when asked.

A real HTTP server on 127.0.0.1 for download tests and benchmarks.

``GET /media/<id>`` serves the file ``<root>/<id>.<ext>`` with its audio content type, and
misbehaves on purpose by id prefix:

- ``stall_<...>``: sends the headers and 1 KiB, then stalls for ``stall_s`` seconds;
- ``short_<...>``: announces the whole length but closes after half of the bytes;
- ``limited_<...>``: answers 429 Too Many Requests while ``rate_limited`` is true (and, when
  ``limited_answers`` is set, only that many times in all);
- an id with no file: 404.

``latency_s`` delays every answer (a distant server). Every request is logged with its
arrival time (``log``), the most requests answered at once is kept (``max_in_flight``), and
``on_request(id)``, when set, runs first (a test may block there to order its clients).

Requests for the ids in ``hold`` are held: no answer at all until :meth:`AudioServer.release`
(or the server's exit). A test that kills a client uses it to kill at a known point: with
every id after the first k held, :meth:`AudioServer.wait_held` returns once the client's
workers are all waiting on held ids, so exactly the first k are done and the rest in flight.

Use it as a context manager: ``with AudioServer(root) as srv: srv.url_template``.
"""

from __future__ import annotations

import mimetypes
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
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


def make_audio(path: Path, seconds: float, sr: int = 44100, channels: int = 2, freq: float = 220.0,
               silent: bool = False, extra: list[str] | None = None, noise: str = "pink", seed: int = 0) -> Path:
    """Write ``seconds`` of audio to ``path`` (format from its suffix) and return ``path``: a
    four-note chord on ``freq`` over ``noise``-coloured noise (ffmpeg's anoisesrc colours),
    the same samples for the same ``seed``."""
    if silent:
        src = f"anullsrc=r={sr}:cl={'mono' if channels == 1 else 'stereo'}"
    else:
        tones = "+".join(f"0.15*sin(2*PI*{f:.2f}*t)" for f in (freq, freq * 1.25, freq * 1.5, freq * 2.01))
        src = f"aevalsrc='({tones})*(0.6+0.4*sin(2*PI*0.5*t))|({tones})*(0.6+0.4*cos(2*PI*0.5*t))':s={sr}:d={seconds}"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-t", str(seconds),
           "-i", src]
    if not silent:
        cmd += ["-f", "lavfi", "-t", str(seconds), "-i", f"anoisesrc=c={noise}:a=0.02:r={sr}:seed={seed}",
                "-filter_complex", "[0][1]amix=inputs=2:normalize=0"]
    cmd += ["-ac", str(channels), "-ar", str(sr), *CODECS[path.suffix], *(extra or []), str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True)
    return path


TYPES = {".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".ogg": "audio/ogg", ".flac": "audio/flac", ".wav": "audio/wav"}


class MediaServer:
    """Serves the audio files of ``root`` (see the module docstring) on a free loopback port."""

    def __init__(self, root: Path, stall_s: float = 30.0, latency_s: float = 0.0,
                 hold: Iterable[str] = ()) -> None:
        self.root = Path(root)
        self.stall_s = stall_s
        self.latency_s = latency_s
        self.rate_limited = True
        self.requests: list[str] = []
        self.hold = set(hold)
        self.limited_answers: int | None = None
        self.on_request: Callable[[str], None] | None = None
        self.log: list[tuple[float, str]] = []  # (time.monotonic() at arrival, id)
        self.in_flight = 0
        self.max_in_flight = 0
        self._count = threading.Lock()
        self.held: list[str] = []  # the ids of the requests held so far, in arrival order
        self._held_changed = threading.Condition()
        self._released = threading.Event()
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
                with server._count:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self.answer(body)
                finally:
                    with server._count:
                        server.in_flight -= 1

            def answer(self, body: bool) -> None:
                server.requests.append(self.path)
                item_id = self.path.split("?")[0].rsplit("/", 1)[-1]
                server.log.append((time.monotonic(), item_id))
                if server.on_request is not None:
                    server.on_request(item_id)
                if item_id in server.hold and not server._released.is_set():
                    with server._held_changed:
                        server.held.append(item_id)
                        server._held_changed.notify_all()
                    server._released.wait()
                if server.latency_s:
                    server._stop.wait(server.latency_s)
                if item_id.startswith("limited_") and server.rate_limited:
                    with server._count:
                        limited = server.limited_answers is None or server.limited_answers > 0
                        if server.limited_answers is not None and limited:
                            server.limited_answers -= 1
                    if limited:
                        self.send_error(429, "Too Many Requests")
                        return
                files = sorted(server.root.glob(f"{item_id}.*")) if self.path.startswith("/media/") else []
                if not files:
                    self.send_error(404, "Not Found")
                    return
                data = files[0].read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", TYPES.get(files[0].suffix) or mimetypes.guess_type(files[0].name)[0]
                                 or "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if not body:
                    return
                if item_id.startswith("stall_"):
                    self.wfile.write(data[:1024])
                    self.wfile.flush()
                    server._stop.wait(server.stall_s)
                    self.close_connection = True
                    return
                if item_id.startswith("short_"):
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients that hang up (timeouts on purpose) are not errors here

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url_template(self) -> str:
        port = self.httpd.server_address[1]
        return f"http://127.0.0.1:{port}/media/{{id}}"

    def wait_held(self, ids: int, timeout: float) -> bool:
        """Wait until requests for ``ids`` different ids are held; False after ``timeout`` s."""
        with self._held_changed:
            return self._held_changed.wait_for(lambda: len(set(self.held)) >= ids, timeout)

    def release(self) -> None:
        """Answer the held requests (to whoever still listens) and hold nothing from now on."""
        self._released.set()

    def __enter__(self) -> MediaServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._released.set()
        self.httpd.shutdown()
        self.httpd.server_close()
