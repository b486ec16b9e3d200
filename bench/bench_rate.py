"""Rating a library: `deepcurator rate` over real-length tracks with the FULL-width model,
side by side in one run with

1. the machine's floor: the CPU-seconds of decoding + features and of inference for the same
   files, measured one file at a time in this process, divided by the cores (what a perfect
   pipeline that keeps every core busy with useful work would take);
2. posting the same files to `/predict` one at a time, to `deepcurator serve --production`
   (gunicorn with the shipped configuration), as a client script would.

    python bench/bench_rate.py [--tracks 100] [--distinct 20] [--rounds 2]

rate and /predict take turns (ROUNDS times each) so that both see the same background load.

The corpus: DISTINCT different 3-5 minute mp3s (128 kbps, music-like), each copied under
TRACKS / DISTINCT names (decoding and scoring cost the same for a copy). Writes
bench/out/rate/results.json and prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from _common import make_audio  # noqa: E402

from deepcurator.demo.pipeline import free_port  # noqa: E402 - once sys.path holds the repository
from deepcurator.demo.server_process import stop, wait_until_healthy  # noqa: E402 - once sys.path holds the repository

from bench_serve import full_model, server_cpu_s  # noqa: E402


def corpus(out: Path, tracks: int, distinct: int) -> list[Path]:
    src = out / "distinct"
    files = []
    for i in range(distinct):
        seconds = 180 + (120 * i) // max(1, distinct - 1)  # 3 to 5 minutes
        path = src / f"d{i:02d}_{seconds}s.mp3"
        if not path.exists():
            make_audio(path, seconds, freq=140.0 + 17 * i, seed=i)
        files.append(path)
    lib = out / "library"
    lib.mkdir(parents=True, exist_ok=True)
    names = []
    for k in range(tracks):
        path = lib / f"track{k:03d}.mp3"
        if not path.exists():
            shutil.copy(files[k % distinct], path)
        names.append(path)
    return names


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def floor(files: list[Path], model: Path) -> dict[str, float]:
    """CPU-seconds of decoding + features (one BLAS thread, as rate's workers) and of
    inference (TensorFlow's default threads, as rate's model), file by file in this process."""
    from threadpoolctl import threadpool_limits

    from deepcurator.serving.scoring import ModelSource, Scorer, track_input

    scorer = Scorer(ModelSource(model, "full-width"))
    prep_cpu = infer_cpu = audio_s = 0.0
    slices = 0
    with threadpool_limits(1, user_api="blas"):
        for path in files:
            c0 = time.process_time()
            x = track_input(path, decode_timeout=None, max_duration_s=900.0)
            c1 = time.process_time()
            for s in x.slices:
                scorer.predict(s[None])
            c2 = time.process_time()
            prep_cpu += c1 - c0
            infer_cpu += c2 - c1
            audio_s += x.duration_s
            slices += len(x.slices)
    return {"decode_features_cpu_s": prep_cpu, "inference_cpu_s": infer_cpu, "audio_s": audio_s, "slices": slices}


def run_rate(lib: Path, out: Path, env: dict[str, str], workers: int) -> dict[str, float]:
    results = out / "rated.jsonl"
    results.unlink(missing_ok=True)
    cpu0 = children_cpu_s()
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "deepcurator", "rate", str(lib), "--jsonl", str(results),
                           "--workers", str(workers)], cwd=out, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"rate failed:\n{proc.stderr[-3000:]}")
    summary = proc.stderr.strip().splitlines()[-1]
    elapsed = float(re.search(r"elapsed ([\d.]+) s", summary).group(1))
    done = int(re.search(r"done (\d+)", summary).group(1))
    return {"wall_s": wall, "elapsed_s": elapsed, "done": done, "cpu_s": children_cpu_s() - cpu0, "summary": summary}


def run_predict(files: list[Path], out: Path, env: dict[str, str]) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "deepcurator", "serve", "--production", "--port", str(port)],
                            cwd=out, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(url, proc, timeout=300)
        time.sleep(5)  # the other worker loads its model at the same time: let it finish
        errors = 0
        cpu0 = server_cpu_s(proc)
        started = time.perf_counter()
        for path in files:
            with open(path, "rb") as fh:
                r = requests.post(f"{url}/predict", files={"audio": (path.name, fh)}, timeout=600)
            errors += r.status_code != 200
        wall = time.perf_counter() - started
        cpu = server_cpu_s(proc) - cpu0
    finally:
        stop(proc)
    return {"wall_s": wall, "errors": errors, "cpu_s": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=100)
    ap.add_argument("--distinct", type=int, default=20)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="rate --workers")
    ap.add_argument("--rounds", type=int, default=2, help="rate and /predict taking turns, this many times each")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "rate")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    files = corpus(args.out, args.tracks, args.distinct)
    (REPO / "bench" / "out" / "serve").mkdir(parents=True, exist_ok=True)
    model = full_model(REPO / "bench" / "out" / "serve")
    env = dict(os.environ, PYTHONPATH=str(REPO), DEEPCURATOR_SERVE_MODEL=str(model),
               DEEPCURATOR_STORE_PATH=str(args.out / "store"), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("DEEPCURATOR_CONFIG", None)
    cores = len(os.sched_getaffinity(0))

    # rate and /predict take turns, round after round, so that both see the same background
    # load (the machine is shared); the floor is CPU time, which other load does not inflate.
    rounds = []
    for r in range(args.rounds):
        print(f"round {r + 1}: rate over {len(files)} tracks ...", flush=True)
        rate = run_rate(args.out / "library", args.out, env, args.workers)
        rate["loadavg"] = os.getloadavg()[0]
        print(json.dumps(rate), flush=True)
        print(f"round {r + 1}: /predict one at a time ...", flush=True)
        predict = run_predict(files, args.out, env)
        predict["loadavg"] = os.getloadavg()[0]
        print(json.dumps(predict), flush=True)
        rounds.append({"rate": rate, "predict": predict})
    print("floor: the same files one at a time ...", flush=True)
    fl = floor(files, model)
    print(json.dumps(fl), flush=True)
    load_end = os.getloadavg()

    floor_cpu = fl["decode_features_cpu_s"] + fl["inference_cpu_s"]
    floor_s = floor_cpu / cores
    n, hours = len(files), fl["audio_s"] / 3600
    results = {"tracks": n, "audio_h": hours, "slices": fl["slices"], "cores": cores, "rounds": rounds, "floor": fl,
               "floor_s": floor_s, "loadavg_start": load_start, "loadavg_end": load_end}
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    def per_min(seconds: float) -> str:
        return f"{n / seconds * 60:.1f} tracks/min, {hours / seconds * 60:.2f} h of audio/min"

    print(f"\nmachine: {cores} cores, {platform.processor() or platform.machine()}; load average (1-min) "
          f"{load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end\n")
    print(f"{n} mp3s, {hours:.2f} h of audio, {fl['slices']} slices, full-width model\n")
    print("| | time | throughput | vs the floor | CPU-s | load avg after |")
    print("|---|---|---|---|---|---|")
    print(f"| floor: (decode+features {fl['decode_features_cpu_s']:.0f} CPU-s + inference "
          f"{fl['inference_cpu_s']:.0f} CPU-s) / {cores} cores | {floor_s:.1f} s | {per_min(floor_s)} | 100 % "
          f"| {floor_cpu:.0f} | |")
    for r, rnd in enumerate(rounds, 1):
        rate, predict = rnd["rate"], rnd["predict"]
        print(f"| round {r}: `deepcurator rate --workers {args.workers}` (summary's elapsed) "
              f"| {rate['elapsed_s']:.1f} s | {per_min(rate['elapsed_s'])} | {100 * floor_s / rate['elapsed_s']:.0f} % "
              f"| {rate['cpu_s']:.0f} (start-up included) | {rate['loadavg']:.1f} |")
        print(f"| round {r}: same, wall clock with start-up (TensorFlow, the model, the workers) "
              f"| {rate['wall_s']:.1f} s | {per_min(rate['wall_s'])} | {100 * floor_s / rate['wall_s']:.0f} % | | |")
        print(f"| round {r}: POST /predict one at a time (`serve --production`), {predict['errors']} errors "
              f"| {predict['wall_s']:.1f} s | {per_min(predict['wall_s'])} | {100 * floor_s / predict['wall_s']:.0f} % "
              f"| {predict['cpu_s']:.0f} (server) | {predict['loadavg']:.1f} |")
    best = min(rounds, key=lambda rnd: rnd["rate"]["elapsed_s"])["rate"]
    print(f"\nBest rate round: {100 * floor_s / best['elapsed_s']:.0f} % of the floor; it used "
          f"{best['cpu_s']:.0f} CPU-s in all against the floor's {floor_cpu:.0f} "
          f"({100 * floor_cpu / best['cpu_s']:.0f} % useful work) and had "
          f"{best['cpu_s'] / (best['wall_s'] * cores):.0%} of the {cores} cores over its wall-clock time (other load "
          "on the machine took the rest).")


if __name__ == "__main__":
    main()
