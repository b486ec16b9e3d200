"""Download stage throughput (items per second) against the local test http server.

Serves N copies of a 35-s stereo m4a (made by ffmpeg) from bench/_common.py's MediaServer on
127.0.0.1 and runs the whole stage (yt-dlp extraction, download, duration check, mp3
transcode, put into a local store) with 1, 4 and 16 worker threads, once with no latency
and once with a per-request latency that stands in for a distant server. Side by side: the
straightforward way of the original project, one yt-dlp command-line process per id
(``yt-dlp -x --audio-format mp3``) in a pool of 4.

Run from the repository root:  python bench/bench_download.py [--items 24] [--latency 0.3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import MediaServer, make_audio

from deepcurator import config
from deepcurator.audio import ffmpeg_exe
from deepcurator.stages import download
from deepcurator.store import open_store


def stage_rate(url_template: str, ids: list[str], workers: int, work: Path) -> float:
    """Items per second of ``run_stage`` over ``ids`` with ``workers`` threads (fresh store)."""
    store_dir = work / f"store-{workers}-{time.monotonic_ns()}"
    cfg = config.from_dict({"store": {"path": str(store_dir)},
                            "download": {"url_template": url_template, "workers": workers}})
    store = open_store(cfg)
    store.put_bytes("labels.csv", ("youtube_id,label\n" + "".join(f"{i},1\n" for i in ids)).encode())
    started = time.perf_counter()
    summary = download.run(cfg, store)
    elapsed = time.perf_counter() - started
    assert summary.done == len(ids), summary.line()
    shutil.rmtree(store_dir)
    return len(ids) / elapsed


def cli_rate(url_template: str, ids: list[str], workers: int, work: Path) -> float:
    """Items per second of one ``yt-dlp`` command-line process per id (the original's way)."""
    out = work / "cli"
    ytdlp = [sys.executable, "-m", "yt_dlp", "-q", "--no-progress", "-f", "bestaudio/best", "-x",
             "--audio-format", "mp3", "--audio-quality", "128K", "--ffmpeg-location", ffmpeg_exe()]

    def one(item_id: str) -> None:
        subprocess.run([*ytdlp, "-o", str(out / f"{item_id}.%(ext)s"), url_template.replace("{id}", item_id)],
                       check=True, capture_output=True)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, ids))
    elapsed = time.perf_counter() - started
    assert len(list(out.glob("*.mp3"))) == len(ids)
    shutil.rmtree(out)
    return len(ids) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds added to every http answer")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = make_audio(work / "src.m4a", 35.0)
        www = work / "www"
        www.mkdir()
        ids = [f"item_{i:03d}" for i in range(args.items)]
        for i in ids:
            os.link(src, www / f"{i}.m4a")
        print(f"{args.items} items of 35 s m4a -> mp3 128 kbps, {os.cpu_count()} cpus")
        print(f"{'latency':>8} {'method':<28} {'workers':>7} {'items/s':>8}")
        for latency in (0.0, args.latency):
            with MediaServer(www, latency_s=latency) as srv:
                for workers in (1, 4, 16):
                    rate = stage_rate(srv.url_template, ids, workers, work)
                    print(f"{latency:>7.1f}s {'deepcurator download':<28} {workers:>7} {rate:>8.2f}", flush=True)
                rate = cli_rate(srv.url_template, ids, 4, work)
                print(f"{latency:>7.1f}s {'yt-dlp CLI process per id':<28} {4:>7} {rate:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
