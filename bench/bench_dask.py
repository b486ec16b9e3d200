#!/usr/bin/env python3
"""Time the process stage on Dask worker processes against the local process pool, same files.

The stage (``process_all``: plan, tasks, the failure log, the summary) runs over ``--tracks``
copies of one generated mp3 in a local store (declared shared: every worker is on this
machine), on:

- the local process pool (spawn, one track per process) with 1 and 2 processes;
- a Dask ``LocalCluster`` of separate worker processes (``processes=True``, one thread each,
  the scheduler in this process) with 1 and 2 workers.

Every executor is started and warmed up (each worker has imported the feature code and
processed a track) before any timing; then the configurations run in interleaved rounds (each
round starting with the next configuration), the features removed between runs. Reported:
wall seconds (best and median round), tracks per second, the speed-up of 2 workers over 1, and the
overhead per track of Dask against the pool with as many workers, two ways: in wall time,
``(T_dask - T_pool) × workers / tracks`` (the extra worker time each track costs: scheduling,
pickling the task and its result, the per-run check of the workers), and in CPU time (median
round), counting the worker processes and this process (the client, and for Dask the
scheduler); CPU time is what a busy shared machine disturbs least.

    python bench/bench_dask.py [--tracks 24] [--seconds 300] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from _common import make_audio

from deepcurator import config as config_mod
from deepcurator.parallel import make_executor
from deepcurator.stages.process import process_all
from deepcurator.store import LocalStore


@contextlib.contextmanager
def dask_executor(workers: int, store_root: Path) -> Iterator[Executor]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      host="127.0.0.1") as cluster:
        cfg = config_mod.from_dict({"store": {"path": str(store_root), "shared": True},
                                    "executor": {"dask_scheduler": cluster.scheduler_address}})
        with make_executor(cfg, workers, store=LocalStore(store_root)) as executor:
            yield executor


def worker_pids(executor: Executor) -> list[int]:
    """The processes that run ``executor``'s tasks."""
    client = getattr(executor, "client", None)
    if client is not None:
        return list(client.run(os.getpid).values())
    return list(executor._processes)  # type: ignore[attr-defined]  # a ProcessPoolExecutor's workers


def cpu_seconds(pids: list[int]) -> float:
    """CPU time so far of this process and of ``pids``."""
    total = 0.0
    for pid in [os.getpid(), *pids]:
        times = psutil.Process(pid).cpu_times()
        total += times.user + times.system
    return total


def stock(root: Path, track: Path, n: int) -> LocalStore:
    store = LocalStore(root)
    for i in range(n):
        store.put_file(f"audio/t{i:03d}.mp3", track)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the generated mp3")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    try:
        track = make_audio(tmp / "track.mp3", args.seconds)
        store = stock(tmp / "store", track, args.tracks)
        cfg = config_mod.Config()
        print(f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), load average "
              f"{os.getloadavg()[0]:.1f}; {args.tracks} tracks of {args.seconds:.0f} s, {args.rounds} rounds")
        with contextlib.ExitStack() as stack:
            executors: dict[tuple[str, int], Executor] = {}
            # The pools first, their processes started (on first use) and warmed up before any Dask
            # nanny runs here: a nanny sets its workers' environment (MALLOC_TRIM_THRESHOLD_...) in
            # this process's os.environ, which processes spawned later would inherit.
            for kind in ("pool", "dask"):
                for workers in (1, 2):
                    executors[kind, workers] = stack.enter_context(
                        make_executor(cfg, workers) if kind == "pool" else dask_executor(workers, tmp / "store"))
                    warm = stock(tmp / f"warm-{kind}-{workers}", track, 2 * workers)  # every worker imports and runs
                    assert process_all(warm, executors[kind, workers], cfg.process).done == 2 * workers
            walls: dict[tuple[str, int], list[float]] = {key: [] for key in executors}
            cpu: dict[tuple[str, int], list[float]] = {key: [] for key in executors}
            pids = {key: worker_pids(executor) for key, executor in executors.items()}
            order = list(executors)
            for r in range(args.rounds):
                for key in order[r % len(order):] + order[:r % len(order)]:  # each round starts elsewhere
                    executor = executors[key]
                    for k in list(store.list("features/")):
                        store.delete(k)
                    cpu_before, started = cpu_seconds(pids[key]), time.perf_counter()
                    summary = process_all(store, executor, cfg.process)
                    wall = time.perf_counter() - started
                    cpu[key].append(cpu_seconds(pids[key]) - cpu_before)
                    assert summary.done == args.tracks, summary.line()
                    walls[key].append(wall)
                    print(f"round {r + 1}: {key[0]} x{key[1]}: {wall:.2f} s, CPU {cpu[key][-1]:.2f} s "
                          f"(load {os.getloadavg()[0]:.1f})", flush=True)
        print(f"\nload average at the end {os.getloadavg()[0]:.1f}\n")
        print("| executor | workers | wall s, best (median) | tracks/s, best | speed-up over 1 worker, best (median) "
              "| CPU s per track (median) | overhead per track, wall (best) | overhead per track, CPU (median) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        best = {key: min(v) for key, v in walls.items()}
        median = {key: statistics.median(v) for key, v in walls.items()}
        per_track = {key: statistics.median(v) / args.tracks for key, v in cpu.items()}
        for kind in ("pool", "dask"):
            for workers in (1, 2):
                key = kind, workers
                over_wall = over_cpu = ""
                if kind == "dask":
                    over_wall = f"{(best[key] - best['pool', workers]) * workers / args.tracks * 1000:+.0f} ms"
                    over_cpu = f"{(per_track[key] - per_track['pool', workers]) * 1000:+.0f} ms"
                print(f"| {'local process pool' if kind == 'pool' else 'Dask worker processes'} | {workers} | "
                      f"{best[key]:.2f} ({median[key]:.2f}) | {args.tracks / best[key]:.2f} | "
                      f"{best[kind, 1] / best[key]:.2f}x ({median[kind, 1] / median[key]:.2f}x) | "
                      f"{per_track[key]:.3f} | {over_wall} | {over_cpu} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
