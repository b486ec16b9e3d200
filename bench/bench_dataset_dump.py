"""Streaming a Discogs releases dump: peak memory and releases per second.

Writes a gzipped dump of N releases in the dump's structure (default 200,000; each with
artists, labels, formats, genres, styles, a 6-track tracklist with track artists, credits,
identifiers and, for most, videos; about 30 % Electronic) and reads it three ways, each in
a fresh process so that its peak RSS is its own:

- ``stream``: :func:`deepcurator.discogs.dump.scan` (what ``deepcurator dataset`` runs):
  records cut from the byte stream, a byte pre-test, then one ``fromstring`` per candidate;
- ``stream-all``: the same without the byte pre-test (every record parsed, like the others);
- ``iterparse``: ``ElementTree.iterparse`` on the gzip stream, each release cleared after use
  (the usual streaming recipe), with the same filter;
- ``parse``: ``ElementTree.parse`` of the whole document, then the filter (the straightforward
  way), on a smaller dump (``--parse-releases``) since its memory grows with the dump.

Run from the repository root:  python bench/bench_dataset_dump.py [--releases 200000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GENRES = ["Electronic", "Rock", "Pop", "Jazz", "Hip Hop", "Funk / Soul", "Classical", "Folk, World, & Country"]
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
STYLES = ["Techno", "House", "Ambient", "Drum n Bass", "Trance", "Indie Rock", "Soul", "Disco"]


def release_xml(i: int, rng: random.Random) -> str:
    genres = ["Electronic"] if rng.random() < 0.3 else rng.sample(GENRES[1:], rng.randint(1, 2))
    videos = "".join(
        f'<video src="https://www.youtube.com/watch?v={"".join(rng.choices(ALPHABET, k=11))}" '
        f'duration="{rng.randint(60, 600)}" embed="true"><title>Video {k}</title>'
        f"<description>Some description of video {k}</description></video>"
        for k in range(rng.choice([0, 0, 1, 1, 2, 3]))
    )
    tracks = "".join(
        f"<track><position>{side}{n}</position><title>Track {side}{n} of release {i}</title>"
        f"<duration>{rng.randint(2, 9)}:{rng.randint(0, 59):02d}</duration>"
        f"<artists><artist><id>{rng.randint(1, 9_000_000)}</id><name>Track Artist</name><anv></anv>"
        f"<join></join><role></role><tracks></tracks></artist></artists></track>"
        for side in "AB" for n in (1, 2, 3)
    )
    return (
        f'<release id="{i}" status="Accepted"><images><image height="600" type="primary" uri="" uri150="" '
        f'width="600"/></images><artists><artist><id>{rng.randint(1, 9_000_000)}</id><name>Artist {i % 9973}'
        f"</name><anv></anv><join></join><role></role><tracks></tracks></artist></artists>"
        f"<title>Title of release {i}</title><labels><label name=\"Label {i % 4999}\" catno=\"CAT{i}\" "
        f'id="{rng.randint(1, 2_000_000)}"/></labels><extraartists><artist><id>{rng.randint(1, 9_000_000)}</id>'
        f"<name>Engineer</name><anv></anv><join></join><role>Mastered By</role><tracks></tracks></artist>"
        f'</extraartists><formats><format name="Vinyl" qty="1" text=""><descriptions><description>12&quot;'
        f"</description><description>33 ⅓ RPM</description></descriptions></format></formats>"
        f"<genres>{''.join(f'<genre>{escape(g)}</genre>' for g in genres)}</genres>"
        f"<styles><style>{rng.choice(STYLES)}</style></styles><country>Germany</country>"
        f"<released>{rng.randint(1960, 2024)}-{rng.randint(1, 12):02d}-00</released>"
        f"<notes>Recorded somewhere. Pressed somewhere else.</notes><data_quality>Needs Vote</data_quality>"
        f'<master_id is_main_release="true">{rng.randint(1, 3_000_000)}</master_id><tracklist>{tracks}</tracklist>'
        f'<identifiers><identifier type="Barcode" value="4 012345 678901"/><identifier type="Matrix / Runout" '
        f'description="Side A" value="CAT{i}-A"/></identifiers><videos>{videos}</videos>'
        f'<companies><company><id>{rng.randint(1, 2_000_000)}</id><name>Pressing Plant</name><catno></catno>'
        f"<entity_type>17</entity_type><entity_type_name>Pressed By</entity_type_name></company></companies>"
        f"</release>\n"
    )


def write_dump(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?><releases>\n')
        for i in range(1, n + 1):
            fh.write(release_xml(i, rng))
        fh.write("</releases>\n")


def child(mode: str, path: str) -> None:
    """Read the dump one way; print records, kept, seconds and peak RSS (MiB) as JSON."""
    import xml.etree.ElementTree as ET

    from deepcurator.discogs.dump import Filter, open_dump, parse_release, scan

    keep = Filter("Electronic")
    started = time.perf_counter()
    kept = records = 0
    if mode.startswith("stream"):
        if mode == "stream-all":  # no byte pre-test: every record parsed, as the other two do
            keep.may_keep = lambda chunk: None  # type: ignore[method-assign]  # this mode: no byte pre-test
        counts: dict[str, int] = {}
        kept = sum(1 for _ in scan(path, keep, counts))
        records = counts["records"]
    elif mode == "iterparse":
        with open_dump(path) as fh:
            context = ET.iterparse(fh, events=("start", "end"))
            _, root = next(context)
            for event, elem in context:
                if event == "end" and elem.tag == "release":
                    records += 1
                    r = parse_release(elem, records)
                    kept += keep.reject(r) is None if not hasattr(r, "reason") else 0
                    elem.clear()
                    root.clear()
    else:
        with open_dump(path) as fh:
            tree = ET.parse(fh)
        for records, elem in enumerate(tree.getroot().iter("release"), 1):
            r = parse_release(elem, records)
            kept += keep.reject(r) is None if not hasattr(r, "reason") else 0
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(json.dumps({"records": records, "kept": kept, "seconds": seconds, "peak_mib": peak}))


def measure(mode: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--releases", type=int, default=200_000)
    parser.add_argument("--parse-releases", type=int, default=50_000, help="dump size for the whole-document parse")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for n in sorted({args.parse_releases, args.releases}):
            path = Path(tmp) / f"releases-{n}.xml.gz"
            t = time.perf_counter()
            write_dump(path, n)
            with gzip.open(path, "rb") as fh:
                raw = sum(len(b) for b in iter(lambda: fh.read(1 << 20), b""))
            print(f"dump of {n} releases: {path.stat().st_size / 2**20:.1f} MiB gzipped, {raw / 2**20:.1f} MiB of XML "
                  f"({raw / n:.0f} B/release), written in {time.perf_counter() - t:.0f} s", flush=True)
            modes = ["stream", "stream-all", "iterparse"] + (["parse"] if n <= args.parse_releases else [])
            for mode in modes:
                m = measure(mode, path)
                rows.append((n, mode, m, raw))
                print(f"  {mode:10s} {m['records']} records, {m['kept']} kept, {m['seconds']:.1f} s, "
                      f"{m['records'] / m['seconds']:,.0f} releases/s, {raw / 2**20 / m['seconds']:.0f} MiB XML/s, "
                      f"peak RSS {m['peak_mib']:.0f} MiB", flush=True)
    print("\n| releases | way | releases/s | MiB of XML/s | peak RSS (MiB) |\n|---|---|---|---|---|")
    for n, mode, m, raw in rows:
        print(f"| {n:,} | {mode} | {m['records'] / m['seconds']:,.0f} | {raw / 2**20 / m['seconds']:.0f} "
              f"| {m['peak_mib']:.0f} |")
    print(f"\ncpus: {os.cpu_count()}, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
