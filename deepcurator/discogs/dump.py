"""Streaming the Discogs releases dump (``discogs_YYYYMMDD_releases.xml.gz``).

The dump is one ``<releases>`` element holding millions of ``<release id=".." status="..">``
records (tens of GB uncompressed), each with ``<artists><artist><id/><name/>``,
``<labels><label name="" catno="" id=""/>``, ``<formats><format name=""><descriptions>``,
``<genres><genre>``, ``<styles><style>``, ``<released>``, ``<master_id>`` and
``<videos><video src="https://www.youtube.com/watch?v=..">``.

It is read as a byte stream, cut at each ``</release>`` and every record parsed on its own
(``xml.etree.ElementTree.fromstring``): memory holds one record and one read block
(:data:`BLOCK_BYTES`), never the document, and a malformed record (broken XML, a missing or
non-numeric id) is reported as a :class:`BadRecord` while the stream goes on. An incremental
parser over the whole document (``iterparse``) would stop at the first broken byte.
A cheap byte test skips records that cannot be kept (not the genre, no YouTube link) before
any parsing, so such records are counted but never validated.
"""

from __future__ import annotations

import gzip
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast
from xml.sax.saxutils import escape

from deepcurator.errors import InputError

log = logging.getLogger(__name__)

BLOCK_BYTES = 1 << 20  # bytes read from the (decompressed) stream at a time
END_TAG = b"</release>"
START_TAG = re.compile(rb"<release[\s>]")  # not <releases>
YOUTUBE_ID = re.compile(r"(?:[?&]v=|youtu\.be/|/embed/|/v/)([A-Za-z0-9_-]{11})(?![A-Za-z0-9_-])")


@dataclass(frozen=True)
class Release:
    """One release of the dump, reduced to what the table needs.

    ``artists`` and ``labels`` are ``(id, name)`` pairs in credit order (release-level only,
    not track artists); ``videos`` the distinct YouTube ids in dump order; ``year`` from
    ``<released>`` (None when absent or unknown); ``formats`` the format names and their
    descriptions (``Vinyl``, ``12"``, ``LP``...).
    """

    id: int
    status: str
    genres: tuple[str, ...]
    styles: tuple[str, ...]
    formats: tuple[str, ...]
    year: int | None
    master_id: int | None
    artists: tuple[tuple[int, str], ...]
    labels: tuple[tuple[int, str], ...]
    videos: tuple[str, ...]


@dataclass(frozen=True)
class BadRecord:
    """A record that could not be read: its 1-based position among the dump's records, the
    reason, and its id attribute when there was one."""

    index: int
    reason: str
    release_id: str | None = None


class DumpError(InputError):
    """The dump cannot be read at all (missing, not gzip/XML)."""


def youtube_id(url: str) -> str | None:
    """The 11-character video id of a YouTube URL (watch?v=, youtu.be/, /embed/), else None."""
    m = YOUTUBE_ID.search(url or "")
    return m.group(1) if m else None


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


def _year(text: str | None) -> int | None:
    head = (text or "").strip()[:4]
    return int(head) if len(head) == 4 and head.isdigit() and int(head) > 0 else None


def parse_release(elem: ET.Element, index: int = 0) -> Release | BadRecord:
    """Read one ``<release>`` element; a missing or non-numeric id gives a :class:`BadRecord`."""
    rid = elem.get("id")
    if rid is None:
        return BadRecord(index, "no id")
    if not rid.strip().isdigit():
        return BadRecord(index, "bad id", rid[:40])
    artists = []
    for a in elem.findall("artists/artist"):
        aid = _int(a.findtext("id"))
        if aid is not None:
            artists.append((aid, (a.findtext("name") or "").strip()))
    labels = []
    for lab in elem.findall("labels/label"):
        lid = _int(lab.get("id"))
        if lid is not None:
            labels.append((lid, (lab.get("name") or "").strip()))
    formats: list[str] = []
    for f in elem.findall("formats/format"):
        if f.get("name"):
            formats.append(f.get("name", ""))
        formats.extend((d.text or "").strip() for d in f.findall("descriptions/description") if d.text)
    videos: list[str] = []
    for v in elem.findall("videos/video"):
        vid = youtube_id(v.get("src", ""))
        if vid and vid not in videos:
            videos.append(vid)
    return Release(
        id=int(rid),
        status=elem.get("status", ""),
        genres=tuple((g.text or "").strip() for g in elem.findall("genres/genre")),
        styles=tuple((s.text or "").strip() for s in elem.findall("styles/style")),
        formats=tuple(formats),
        year=_year(elem.findtext("released")),
        master_id=_int(elem.findtext("master_id")),
        artists=tuple(artists),
        labels=tuple(labels),
        videos=tuple(videos),
    )


def open_dump(path: str | Path) -> IO[bytes]:
    """The dump's bytes, decompressed when it is gzip (by its magic bytes, not its name)."""
    p = Path(path)
    if not p.is_file():
        raise DumpError(f"dump {p} not found")
    with open(p, "rb") as fh:
        magic = fh.read(2)
    return cast(IO[bytes], gzip.open(p, "rb")) if magic == b"\x1f\x8b" else open(p, "rb")


def iter_chunks(stream: IO[bytes], block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Each ``<release ...>...</release>`` record of ``stream`` as bytes, in order.

    Text between records (the XML declaration, ``<releases>``, whitespace) is dropped. A
    tail without ``</release>`` (a truncated dump) is yielded as it is, so that it shows up
    as a malformed record.
    """
    buf = b""
    while True:
        try:
            block = stream.read(block_bytes)
        except (OSError, EOFError) as exc:  # gzip: truncated or corrupt
            raise DumpError(f"the dump stops being readable: {exc}") from None
        if not block:
            break
        buf += block
        start = 0
        while True:
            end = buf.find(END_TAG, start)
            if end < 0:
                break
            end += len(END_TAG)
            chunk = buf[start:end]
            m = START_TAG.search(chunk)
            yield chunk[m.start():] if m else chunk
            start = end
        buf = buf[start:]
    tail = buf.strip()
    if tail.startswith(b"<?xml"):
        tail = tail[tail.find(b"?>") + 2:].strip()
    if tail.startswith(b"<releases"):
        tail = tail[tail.find(b">") + 1:].strip()
    tail = tail.removesuffix(b"</releases>").strip()
    if tail:
        yield tail


class Filter:
    """Which releases to keep: the genre, at least one YouTube video, status ``Accepted`` (or
    none given), and the optional styles (any of), years (ranges) and formats (any of)."""

    def __init__(self, genre: str, styles: str = "", years: str = "", formats: str = "") -> None:
        self.genre = genre.strip()
        self.styles = frozenset(s.strip() for s in styles.split(",") if s.strip())
        self.formats = frozenset(f.strip().lower() for f in formats.split(",") if f.strip())
        self.years: list[tuple[int, int]] = []
        for part in filter(None, (p.strip() for p in years.split(","))):
            lo, _, hi = part.partition("-")
            self.years.append((int(lo), int(hi or lo)))
        self._genre_bytes = f"<genre>{escape(self.genre)}</genre>".encode()

    def signature(self) -> str:
        """A string that changes whenever the filter does (the scan cache's key)."""
        return repr((self.genre, sorted(self.styles), self.years, sorted(self.formats)))

    def may_keep(self, chunk: bytes) -> str | None:
        """A cheap test on the raw record: the reason it cannot be kept, or None."""
        if self._genre_bytes not in chunk:
            return "other genre"
        if b"youtu" not in chunk:
            return "no YouTube video"
        return None

    def reject(self, r: Release) -> str | None:
        """The reason ``r`` is not kept, or None when it is."""
        if r.status not in ("", "Accepted"):
            return "not accepted"
        if self.genre not in r.genres:
            return "other genre"
        if not r.videos:
            return "no YouTube video"
        if self.styles and not self.styles.intersection(r.styles):
            return "style filtered"
        if self.years and (r.year is None or not any(lo <= r.year <= hi for lo, hi in self.years)):
            return "year filtered"
        if self.formats and not self.formats.intersection(f.lower() for f in r.formats):
            return "format filtered"
        return None


def scan(path: str | Path, keep: Filter, counts: dict[str, int] | None = None,
         bad: list[BadRecord] | None = None) -> Iterator[Release]:
    """Stream the dump at ``path`` and yield the releases ``keep`` keeps.

    ``counts`` (if given) is updated as the stream goes: ``records`` read, ``kept``, and one
    entry per reason a record was left out (``other genre``, ``bad id``, ``malformed XML``...);
    ``bad`` collects every :class:`BadRecord`. Bad records are logged and skipped.
    """
    counts = {} if counts is None else counts
    with open_dump(path) as stream:
        for index, chunk in enumerate(iter_chunks(stream), 1):
            counts["records"] = index
            reason = keep.may_keep(chunk)
            if reason is None:
                try:
                    elem = ET.fromstring(chunk)
                except ET.ParseError as exc:
                    m = re.search(rb'<release[^>]*\sid="([^"]*)"', chunk[:200])
                    record: Release | BadRecord = BadRecord(index, "malformed XML",
                                                            m.group(1).decode(errors="replace")[:40] if m else None)
                    log.debug("record %d: %s", index, exc)
                else:
                    record = parse_release(elem, index) if elem.tag == "release" else BadRecord(index, "not a release")
                if isinstance(record, BadRecord):
                    reason = record.reason
                    if bad is not None:
                        bad.append(record)
                    if counts.get(reason, 0) < 10:
                        log.warning("dump record %d (id %s): %s, skipped", index, record.release_id, reason)
                else:
                    reason = keep.reject(record)
                    if reason is None:
                        counts["kept"] = counts.get("kept", 0) + 1
                        yield record
                        continue
            counts[reason] = counts.get(reason, 0) + 1
