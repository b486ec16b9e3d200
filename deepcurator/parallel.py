"""Running per-item work on an Executor, with a progress bar and an end-of-stage summary.

Per-track stages (download, process) take any :class:`concurrent.futures.Executor`: a
local pool by default, or a Dask ``distributed`` executor when ``executor.dask_scheduler``
is set (DESIGN.md, "Scaling out"). Process pools use the *spawn* start method, since
TensorFlow and other threaded libraries are not fork-safe.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tqdm import tqdm

from deepcurator.config import Config

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def make_executor(cfg: Config, workers: int, kind: str = "process") -> Iterator[Executor]:
    """An executor for per-item work.

    ``kind`` is ``"process"`` (CPU-bound work, spawn start method) or ``"thread"``
    (I/O-bound work). With ``executor.dask_scheduler`` set, a Dask client executor is used
    instead, whatever ``kind``; its tasks are submitted with ``pure=False`` so identical
    calls with side effects are not deduplicated.
    """
    if cfg.executor.dask_scheduler:
        from distributed import Client

        with Client(cfg.executor.dask_scheduler) as client:
            yield client.get_executor(pure=False)
        return
    workers = max(1, workers)
    if kind == "thread":
        pool: Executor = ThreadPoolExecutor(max_workers=workers)
    else:
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    with pool:
        yield pool


def run_items(
    executor: Executor,
    fn: Callable[..., R],
    items: Iterable[T],
    *args: Any,
    desc: str,
    max_in_flight: int = 256,
) -> Iterator[tuple[T, R | BaseException]]:
    """Apply ``fn(item, *args)`` to every item on ``executor``, yielding ``(item, result)``
    as each finishes (an exception raised by ``fn`` is yielded in place of its result).

    At most ``max_in_flight`` items are submitted at once, so a long list costs no memory
    up front; a tqdm bar shows progress.
    """
    items = list(items)
    pending: dict[Future, T] = {}
    it = iter(items)
    with tqdm(total=len(items), desc=desc, unit="item", dynamic_ncols=True) as bar:
        def fill() -> None:
            while len(pending) < max_in_flight:
                try:
                    item = next(it)
                except StopIteration:
                    return
                pending[executor.submit(fn, item, *args)] = item

        fill()
        while pending:
            done = next(as_completed(list(pending)))
            item = pending.pop(done)
            exc = done.exception()
            yield item, (exc if exc is not None else done.result())
            bar.update(1)
            fill()


@dataclass
class Summary:
    """Counts of what a stage did, skipped and failed (by reason), printed at the end."""

    stage: str
    done: int = 0
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    extra: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        failed = sum(self.failed.values())
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.failed.items()))
        parts = [f"{self.stage}: done {self.done}", f"skipped {self.skipped}", f"failed {failed}" + (f" ({reasons})" if reasons else "")]
        parts += [f"{k} {v}" for k, v in self.extra.items()]
        parts.append(f"elapsed {time.monotonic() - self.started:.1f} s")
        return ", ".join(parts)
