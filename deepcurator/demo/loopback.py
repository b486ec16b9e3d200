"""A real HTTP/1.1 server on a free 127.0.0.1 port, served from a daemon thread: the base of
the offline stand-ins (the media server that plays YouTube, the tests' Discogs API and model
file servers).

``LoopbackServer(handler)`` binds at once (``url`` is known before it serves), ``start()`` /
``with`` serve, ``stop()`` / leaving the ``with`` shut it down and close the socket. Handler
threads are daemons, and clients that hang up (timeouts on purpose) are not logged as errors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import BaseRequestHandler
from typing import Any, Self


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive (HTTP/1.1) request handler that logs nothing."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts on purpose) are not errors here


class LoopbackServer:
    """``handler`` (a request handler class, or a factory such as a ``functools.partial`` of
    one) served on 127.0.0.1 at a free port."""

    def __init__(self, handler: Callable[..., BaseRequestHandler]) -> None:
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def file_server(folder: Path) -> LoopbackServer:
    """The files of ``folder`` over HTTP (GET and HEAD, as Python's ``http.server`` serves them)."""

    class Files(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    return LoopbackServer(functools.partial(Files, directory=str(folder)))
