"""A Discogs API stand-in on loopback and a writer of releases dumps, for the dataset tests.

:class:`ApiServer` answers ``GET /releases/{id}`` with the release resource's documented
JSON shape (``community.have/want/rating``, ``lowest_price``, ``num_for_sale``), 404 for an
unknown release, and enforces a quota over a moving window with the ``X-Discogs-Ratelimit*``
headers on every answer and 429 beyond it. It can also inject answers (a 429 or a 5xx on
the n-th request), answer 5xx forever for some releases, demand a token, and stop answering
after n releases served (to kill a client at a known point). Every request is recorded.

:func:`write_dump` writes a gzipped dump in the documented structure
(``<releases><release id status><artists><artist><id/><name/>...``).
"""

from __future__ import annotations

import gzip
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from deepcurator.demo.loopback import LoopbackServer, QuietHandler


@dataclass
class Req:
    t: float  # arrival, time.monotonic()
    release_id: int
    status: int
    injected: bool
    authorized: bool
    user_agent: str
    query: str


@dataclass
class ApiServer:
    releases: dict[int, dict[str, Any]]  # release id -> the JSON resource
    limit: int = 60  # requests per window
    window_s: float = 60.0
    token: str | None = None  # when set, requests without "Discogs token=<token>" get 401
    inject: dict[int, int] = field(default_factory=dict)  # n-th request (1-based) -> status
    broken: set[int] = field(default_factory=set)  # releases answered 503 every time
    block_after: int | None = None  # after this many releases served, hang until released
    log: list[Req] = field(default_factory=list)
    served: list[int] = field(default_factory=list)  # release ids answered 200 or 404, in order

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.blocked = threading.Event()
        self.release_block = threading.Event()
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server.handle(self)

        self.loopback = LoopbackServer(Handler)
        self.url = self.loopback.url

    def __enter__(self) -> ApiServer:
        self.loopback.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_block.set()
        self.loopback.stop()

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: dict[str, Any], used: int) -> None:
        data = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("X-Discogs-Ratelimit", str(self.limit))
        h.send_header("X-Discogs-Ratelimit-Used", str(used))
        h.send_header("X-Discogs-Ratelimit-Remaining", str(max(0, self.limit - used)))
        h.end_headers()
        h.wfile.write(data)

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        m = re.fullmatch(r"/releases/(\d+)(\?(.*))?", h.path)
        now = time.monotonic()
        with self.lock:
            if self.block_after is not None and len(self.served) >= self.block_after:
                blocked = True
            else:
                blocked = False
                n = len(self.log) + 1
                used = sum(1 for r in self.log if r.t > now - self.window_s) + 1
                rid = int(m.group(1)) if m else -1
                authorized = self.token is None or h.headers.get("Authorization") == f"Discogs token={self.token}"
                injected = n in self.inject
                if not authorized:
                    status = 401
                elif injected:
                    status = self.inject[n]
                elif used > self.limit:
                    status = 429
                elif rid in self.broken:
                    status = 503
                elif rid in self.releases:
                    status = 200
                else:
                    status = 404
                self.log.append(Req(now, rid, status, injected, authorized, h.headers.get("User-Agent", ""),
                                    m.group(3) or "" if m else ""))
                if status in (200, 404):
                    self.served.append(rid)
        if blocked:
            self.blocked.set()
            self.release_block.wait(60)
            h.close_connection = True
            return
        body = self.releases[rid] if status == 200 else {"message": {
            401: "You must authenticate to access this resource.", 404: "Release not found.",
            429: "You are making requests too quickly."}.get(status, "Internal server error.")}
        self._send(h, status, body, min(used, self.limit))

    # -- measurements ---------------------------------------------------------------------

    def max_per_window(self) -> int:
        """The most requests that arrived within any window of ``window_s`` seconds."""
        times = sorted(r.t for r in self.log)
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - self.window_s:
                j += 1
            best = max(best, i - j + 1)
        return best


def resource(rid: int, have: int, want: int, avg: float, count: int, price: float | None, for_sale: int) -> dict:
    """A release resource as GET /releases/{id} returns it (the fields used, and some others)."""
    return {
        "id": rid, "status": "Accepted", "year": 1999, "title": f"Release {rid}",
        "resource_url": f"https://api.discogs.com/releases/{rid}", "uri": f"https://www.discogs.com/release/{rid}",
        "artists": [{"id": 1, "name": "Someone", "resource_url": "https://api.discogs.com/artists/1"}],
        "community": {"have": have, "want": want, "rating": {"average": avg, "count": count},
                      "status": "Accepted", "data_quality": "Correct", "submitter": {"username": "x"}},
        "lowest_price": price, "num_for_sale": for_sale, "genres": ["Electronic"], "styles": ["Techno"],
    }


@dataclass
class Rel:
    """One release of a test dump."""

    id: int | str
    genres: tuple[str, ...] = ("Electronic",)
    styles: tuple[str, ...] = ("Techno",)
    videos: tuple[str, ...] = ()  # full URLs
    artists: tuple[tuple[int, str], ...] = ((1, "Someone"),)
    labels: tuple[tuple[int, str], ...] = ((10, "Some Label"),)
    released: str = "1999-03-00"
    master_id: int | None = None
    formats: tuple[str, ...] = ("Vinyl",)
    title: str = "A Title"
    raw_title: bool = False  # write the title without escaping (a malformed record)

    def xml(self) -> str:
        arts = "".join(f"<artist><id>{a}</id><name>{escape(n)}</name><anv></anv><join></join><role></role>"
                       f"<tracks></tracks></artist>" for a, n in self.artists)
        labs = "".join(f"<label name={quoteattr(n)} catno=\"CAT {i}\" id=\"{i}\"/>" for i, n in self.labels)
        fmts = "".join(f"<format name={quoteattr(f)} qty=\"1\" text=\"\"><descriptions><description>12&quot;"
                       f"</description></descriptions></format>" for f in self.formats)
        gens = "".join(f"<genre>{escape(g)}</genre>" for g in self.genres)
        stys = "".join(f"<style>{escape(s)}</style>" for s in self.styles)
        vids = "".join(f"<video src={quoteattr(v)} duration=\"300\" embed=\"true\"><title>V</title>"
                       f"<description>D</description></video>" for v in self.videos)
        master = (f"<master_id is_main_release=\"true\">{self.master_id}</master_id>"
                  if self.master_id is not None else "")
        title = self.title if self.raw_title else escape(self.title)
        # a track artist: must not be taken for a release artist
        tracks = ("<tracklist><track><position>A1</position><title>T</title><duration>5:00</duration>"
                  "<artists><artist><id>999999</id><name>Track Artist</name></artist></artists></track></tracklist>")
        return (f"<release id=\"{self.id}\" status=\"Accepted\"><images><image height=\"600\" type=\"primary\" "
                f"uri=\"\" uri150=\"\" width=\"600\"/></images><artists>{arts}</artists><title>{title}</title>"
                f"<labels>{labs}</labels><extraartists></extraartists><formats>{fmts}</formats>"
                f"<genres>{gens}</genres><styles>{stys}</styles><country>UK</country>"
                f"<released>{self.released}</released><notes>n</notes><data_quality>Correct</data_quality>"
                f"{master}{tracks}<identifiers></identifiers><videos>{vids}</videos><companies></companies>"
                f"</release>\n")


def write_dump(path: Path, releases: list[Rel]) -> Path:
    """A gzipped releases dump holding ``releases`` in order."""
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("<releases>\n")
        for r in releases:
            fh.write(r.xml())
        fh.write("</releases>\n")
    return path


def yt(vid: str) -> str:
    return f"https://www.youtube.com/watch?v={vid}"
