#!/usr/bin/env python3
"""Time the feature path side by side on one generated mp3, one core, in one run.

Compared, in interleaved rounds on the same file:
- original: ``librosa.load(sr=22050, res_type="kaiser_fast")`` + melspectrogram + dB (the
  original project's path; needs resampy);
- librosa:  ``librosa.load(sr=22050)`` (its default soxr_hq) + melspectrogram + dB;
- ours:     ``features.file_logmel`` (``audio.decode``: mpg123 + downmix + soxr HQ in blocks,
  then the float32 log-mel);
- decode:   ``audio.decode`` alone, the floor;
- ffmpeg:   ffmpeg's decode, downmix and soxr in one pass (``audio.decode_command``), the route
  for every other format and the one this project used for mp3 before.

Each is measured by wall time (best of the rounds) and CPU time of this process and its
children (median), BLAS pinned to one thread. ``--stage-tracks N`` also runs the process
stage on N copies of the file with one worker and with one worker per core.

    python bench/bench_features.py [--seconds 300] [--rounds 5] [--stage-tracks 0]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import make_audio

from deepcurator import audio, features


def librosa_path(path: Path, res_type: str) -> np.ndarray:
    import librosa

    y, sr = librosa.load(path, sr=audio.SAMPLE_RATE, res_type=res_type)
    return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr), ref=1.0, amin=1e-10, top_db=None)


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = cpu_seconds(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def bench_paths(path: Path, seconds: float, rounds: int) -> None:
    paths: dict[str, Callable[[], object]] = {
        "original (librosa.load kaiser_fast + mel)": lambda: librosa_path(path, "kaiser_fast"),
        "librosa default (load soxr_hq + mel)": lambda: librosa_path(path, "soxr_hq"),
        "ours (audio.decode + features.logmel)": lambda: features.file_logmel(path),
        "decode alone (the floor)": lambda: audio.decode(path),
        "ffmpeg decode (other formats' route)": lambda: subprocess.run(audio.decode_command(path), check=True,
                                                                      capture_output=True).stdout,
    }
    for fn in paths.values():  # warm up: imports, numba JIT, caches
        fn()
    walls: dict[str, list[float]] = {k: [] for k in paths}
    cpus: dict[str, list[float]] = {k: [] for k in paths}
    for _ in range(rounds):
        for name, fn in paths.items():
            wall, cpu = measure(fn)
            walls[name].append(wall)
            cpus[name].append(cpu)
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    wall = {k: min(v) for k, v in walls.items()}
    ours, floor = "ours (audio.decode + features.logmel)", "decode alone (the floor)"
    print(f"\n{seconds:.0f}-s mp3, {rounds} rounds, one core (BLAS/FFT 1 thread)\n")
    print("| path | wall s/track (best) | CPU s/track (median) | x real time per core | ours is faster by (CPU) |")
    print("|---|---:|---:|---:|---:|")
    for name in paths:
        ratio = "-" if name == ours else f"{cpu[name] / cpu[ours]:.2f}x"
        print(f"| {name} | {wall[name]:.3f} | {cpu[name]:.3f} | {seconds / cpu[name]:.0f} | {ratio} |")
    print(f"\nours / decode floor: {cpu[ours] / cpu[floor]:.2f}x CPU, {wall[ours] / wall[floor]:.2f}x wall")
    y = audio.decode(path)
    print(f"log-mel alone: {min(measure(lambda: features.logmel(y))[0] for _ in range(rounds)):.3f} s wall")


def bench_stage(path: Path, n_tracks: int) -> None:
    from deepcurator.config import Config
    from deepcurator.parallel import default_workers, make_executor
    from deepcurator.stages.process import process_all
    from deepcurator.store import LocalStore

    cores = default_workers()
    print(f"\nprocess stage, {n_tracks} copies of the file, local store:\n")
    print("| workers | wall s | tracks/s | speed-up |")
    print("|---:|---:|---:|---:|")
    base = None
    for workers in sorted({1, cores}):
        with tempfile.TemporaryDirectory() as tmp:
            store = LocalStore(tmp)
            for i in range(n_tracks):
                store.put_file(f"audio/t{i:03d}.mp3", path)
            cfg = Config()
            with make_executor(cfg, workers) as executor:
                executor.submit(features.n_frames, 0).result()  # start one worker before timing
                wall, _ = measure(lambda: process_all(store, executor, cfg.process))  # noqa: B023 - called at once, in this iteration
        base = base or wall
        print(f"| {workers} | {wall:.2f} | {n_tracks / wall:.2f} | {base / wall:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the generated mp3")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--stage-tracks", type=int, default=0, help="also time the stage on this many copies")
    args = parser.parse_args()
    threadpool_limits(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    try:
        path = make_audio(tmp / "track.mp3", args.seconds)
        print(f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), load average {os.getloadavg()[0]:.1f}")
        bench_paths(path, args.seconds, args.rounds)
        if args.stage_tracks:
            bench_stage(path, args.stage_tracks)
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
