#!/usr/bin/env python3
"""How to score a track's slices, in-process: as they arrive, or all in one forward pass.

On the same 5-minute mp3 and FULL-width model (random weights) as bench_serve.py, timed in
interleaved rounds:

- stream, per slice: ``predict.score_file`` (the server's way): each slice scored as soon as
  its features are ready, while the rest is decoded;
- stream, one pass: the same streamed features (``SliceStream``), all slices scored in one
  forward pass after the last;
- decode, then one pass: ``audio.decode`` + ``features.model_input(features.logmel(...))``,
  then one forward pass.

Then the cost of one forward pass by batch size, each in a fresh process: its time and the
process's peak memory during the pass (Linux: VmHWM, reset once the model is loaded).

    python bench/bench_scoring.py [--rounds 5] [--batches 1 10 30]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from deepcurator import audio, features  # noqa: E402 - once sys.path holds the repository
from deepcurator.serving.scoring import ModelSource, Scorer, score_file  # noqa: E402 - once sys.path holds the repository
from deepcurator.stream import SliceStream  # noqa: E402 - once sys.path holds the repository

from bench_serve import corpus, full_model  # noqa: E402 - once sys.path holds the repository


def strategies(scorer: Scorer, path: Path) -> dict[str, Callable[[], np.ndarray]]:
    """Each way of scoring ``path``: a function returning the slice probabilities ``(n,)``."""
    return {
        "stream, per slice (the server)": lambda: np.array([s for _, _, s in score_file(scorer, path).slices]) / 100,
        "stream, one pass at the end": lambda: scorer.predict(np.stack(list(SliceStream(path)))),
        "decode, then one pass": lambda: scorer.predict(features.model_input(features.logmel(audio.decode(path)))),
    }


def one_pass(model: str, n: int) -> tuple[float, float, float]:
    """In a fresh process: seconds (best of 3) of one forward pass over ``n`` slices, the
    process's resident memory with the model loaded and its peak during the passes (GB;
    Linux's VmRSS and VmHWM, the peak reset after loading)."""
    scorer = Scorer(ModelSource(Path(model), "bench"))
    x = np.random.default_rng(0).normal(-40, 10, (n, features.N_MELS, features.SLICE_FRAMES, 1)).astype(np.float32)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    loaded = _status_gb("VmRSS")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        scorer.predict(x)
        best = min(best, time.perf_counter() - started)
    return best, loaded, _status_gb("VmHWM")


def _status_gb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024**2
    raise KeyError(field)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "serve")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    _, five = corpus(args.out)
    model = full_model(args.out)

    scorer = Scorer(ModelSource(model, "bench"))
    ways = strategies(scorer, five)
    results = {name: fn() for name, fn in ways.items()}  # warm up, and check they agree
    ref = next(iter(results.values()))
    for name, p in results.items():
        assert p.shape == ref.shape and np.allclose(p, ref, atol=1e-4), f"{name} scores differently"
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, fn in ways.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    print(f"\n5-minute mp3 ({ref.size} slices), full-width model, {args.rounds} rounds, in-process\n")
    print("| strategy | wall s (median) | best |")
    print("|---|---:|---:|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} |")

    print("\none forward pass, each batch size in a fresh process\n")
    print("| slices | seconds (best of 3) | per slice | RSS with the model loaded | peak RSS during the pass |")
    print("|---:|---:|---:|---:|---:|")
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for n in args.batches:
            seconds, loaded, peak = pool.apply(one_pass, (str(model), n))
            print(f"| {n} | {seconds:.3f} | {seconds / n:.3f} | {loaded:.2f} GB | {peak:.2f} GB |")


if __name__ == "__main__":
    main()
