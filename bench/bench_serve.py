"""Serving benchmark on loopback: this project's server against the original's approach.

Both run under gunicorn with 2 workers and the same
FULL-width model (random weights: speed does not depend on them):

1. single-request latency for a 5-minute mp3: one request at a time, the two servers taking
   turns (both running, idle when not asked), with decoding alone (`audio.decode`) as the floor;
2. a bounded load test: UPLOADS uploads of 3-5 minute mp3s at CONCURRENCY, counting errors,
   p50/p95 latency and requests per second.

    python bench/bench_serve.py [--uploads 200] [--original-uploads 24] [--concurrency 8] [--rounds 7]

Writes bench/out/serve/results.json and prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _common import make_audio  # noqa: E402

from deepcurator import audio  # noqa: E402 - once sys.path holds the repository
from deepcurator.demo.pipeline import free_port  # noqa: E402 - once sys.path holds the repository
from deepcurator.demo.server_process import stop, wait_until_healthy  # noqa: E402 - once sys.path holds the repository

DURATIONS = (180, 195, 210, 225, 240, 255, 270, 285, 300)  # seconds: the load test's tracks


def corpus(out: Path) -> tuple[list[Path], Path]:
    """The load test's mp3s (3-5 minutes, different tones) and the 5-minute single-request track."""
    files = []
    for i, d in enumerate(DURATIONS):
        path = out / f"track{i}_{d}s.mp3"
        if not path.exists():
            make_audio(path, d, freq=150.0 + 23 * i)
        files.append(path)
    five = out / "five_minutes.mp3"
    if not five.exists():
        make_audio(five, 300.0, freq=207.0)
    return files, five


def full_model(out: Path) -> Path:
    path = out / "full_width.keras"
    if not path.exists():
        import keras

        from deepcurator.training.model import build_model

        keras.utils.set_random_seed(0)
        build_model(width=1.0).save(path)
    return path


def start(cmd: list[str], env: dict[str, str], url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_healthy(url, proc, timeout=300)
    time.sleep(5)  # the other worker loads its model at the same time: let it finish
    return proc


def upload(url: str, path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        with open(path, "rb") as fh:
            r = requests.post(f"{url}/predict", files={"audio": (path.name, fh)}, timeout=600)
        status = r.status_code if r.status_code != 200 or "score" in r.json() else 599
    except requests.RequestException:
        status = 0
    return time.perf_counter() - started, status


def server_cpu_s(proc: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system) used so far by the server's workers and their finished
    children (ffmpeg, for formats other than mp3): a figure other load on the machine does not
    inflate, unlike latency."""
    import psutil

    total = 0.0
    for child in psutil.Process(proc.pid).children(recursive=False):
        t = child.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
    return total


def single_requests(servers: dict[str, tuple[subprocess.Popen[bytes], str]], five: Path,
                    rounds: int) -> dict[str, dict]:
    """One 5-minute upload at a time, the servers taking turns round after round (with
    decoding alone as a floor), so that both see the same background load."""
    times: dict[str, list[float]] = {name: [] for name in [*servers, "decode_alone"]}
    errors = dict.fromkeys(servers, 0)
    cpu = dict.fromkeys(servers, 0.0)
    for _name, (_, url) in servers.items():
        upload(url, five)  # warm-up (each worker has warmed itself; this warms the OS caches)
    for _ in range(rounds):
        started = time.perf_counter()
        audio.decode(five)
        times["decode_alone"].append(time.perf_counter() - started)
        for name, (proc, url) in servers.items():
            before = server_cpu_s(proc)
            seconds, status = upload(url, five)
            cpu[name] += server_cpu_s(proc) - before
            times[name].append(seconds)
            errors[name] += status != 200
    out = {name: {"p50_s": float(np.median(t)), "min_s": float(np.min(t))} for name, t in times.items()}
    for name in servers:
        out[name].update(cpu_s=cpu[name] / rounds, errors=errors[name])
    return out


def load_test(proc: subprocess.Popen[bytes], url: str, files: list[Path], uploads: int, concurrency: int) -> dict:
    """UPLOADS uploads of the 3-5 minute tracks, CONCURRENCY at a time."""
    cpu0 = server_cpu_s(proc)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: upload(url, files[i % len(files)]), range(uploads)))
    wall = time.perf_counter() - started
    lat = np.array([t for t, _ in results])
    return {
        "uploads": uploads, "errors": sum(s != 200 for _, s in results),
        "p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
        "req_per_s": uploads / wall, "wall_s": wall, "cpu_s_per_upload": (server_cpu_s(proc) - cpu0) / uploads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=200)
    ap.add_argument("--original-uploads", type=int, default=24, help="the original takes ~7 s a request")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7, help="single-request rounds (each server once per round)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "serve")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    files, five = corpus(args.out)
    model = full_model(args.out)
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    env = dict(os.environ, PYTHONPATH=str(REPO), DEEPCURATOR_SERVE_MODEL=str(model), BENCH_MODEL=str(model),
               DEEPCURATOR_STORE_PATH=str(args.out / "store"), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("DEEPCURATOR_CONFIG", None)

    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for name, app in (("deepcurator", "deepcurator.serving.wsgi:app"), ("original", "original_app:app")):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            cmd = [gunicorn, "-w", "2", "-b", f"127.0.0.1:{port}", "--timeout", "600", "--pythonpath", "bench", app]
            servers[name] = (start(cmd, env, url), url)
        print(f"single requests: {args.rounds} rounds ...", flush=True)
        single = single_requests(servers, five, args.rounds)
        print(json.dumps(single), flush=True)
        load: dict[str, dict] = {}
        for name, n in (("deepcurator", args.uploads), ("original", args.original_uploads)):
            print(f"{name}: {n} uploads at concurrency {args.concurrency} ...", flush=True)
            proc, url = servers.pop(name)  # the other server is idle or already stopped
            try:
                load[name] = load_test(proc, url, files, n, args.concurrency)
            finally:
                stop(proc)
            print(name, json.dumps(load[name]), flush=True)
    finally:
        for proc, _ in servers.values():
            stop(proc)

    ours, orig, so, sg = load["deepcurator"], load["original"], single["deepcurator"], single["original"]
    avg = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps({"single": single, "load": load, "loadavg": avg}, indent=2))
    print(f"\nmachine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"load average at the end {avg[0]:.1f}/{avg[1]:.1f}/{avg[2]:.1f}\n")
    print("| | deepcurator (gunicorn -w 2) | original's way (gunicorn -w 2) | ratio |")
    print("|---|---|---|---|")
    print(f"| 5-min mp3, one request at a time, p50 ({args.rounds} rounds, taking turns) | {so['p50_s']:.2f} s "
          f"| {sg['p50_s']:.2f} s | {sg['p50_s'] / so['p50_s']:.1f}x |")
    print(f"| same, best of {args.rounds} | {so['min_s']:.2f} s | {sg['min_s']:.2f} s "
          f"| {sg['min_s'] / so['min_s']:.1f}x |")
    print(f"| decoding alone of that mp3 (audio.decode), p50, same rounds "
          f"| {single['decode_alone']['p50_s']:.2f} s | | |")
    print(f"| server CPU time per 5-min request (user+sys, decoding included) | {so['cpu_s']:.2f} s "
          f"| {sg['cpu_s']:.2f} s | {sg['cpu_s'] / so['cpu_s']:.1f}x |")
    print(f"| load test: uploads of 3-5 min mp3s at concurrency {args.concurrency} | {ours['uploads']} "
          f"| {orig['uploads']} | |")
    print(f"| errors | {ours['errors'] + so['errors']} | {orig['errors'] + sg['errors']} | |")
    print(f"| latency p50 | {ours['p50_s']:.2f} s | {orig['p50_s']:.2f} s | {orig['p50_s'] / ours['p50_s']:.1f}x |")
    print(f"| latency p95 | {ours['p95_s']:.2f} s | {orig['p95_s']:.2f} s | {orig['p95_s'] / ours['p95_s']:.1f}x |")
    print(f"| throughput | {ours['req_per_s']:.2f} req/s | {orig['req_per_s']:.2f} req/s "
          f"| {ours['req_per_s'] / orig['req_per_s']:.1f}x |")
    print(f"| server CPU time per upload | {ours['cpu_s_per_upload']:.2f} s | {orig['cpu_s_per_upload']:.2f} s "
          f"| {orig['cpu_s_per_upload'] / ours['cpu_s_per_upload']:.1f}x |")

if __name__ == "__main__":
    main()
