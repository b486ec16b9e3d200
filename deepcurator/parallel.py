"""Executors for per-item work, and running items on one with a progress bar.

Per-track stages (download, process) take any :class:`concurrent.futures.Executor`: a
local pool by default, or a Dask ``distributed`` executor when ``executor.dask_scheduler``
is set (:mod:`deepcurator.cluster`; docs/REFERENCE.md, "Scaling out on a Dask cluster").
:mod:`deepcurator.stagerun` builds a stage's run on these.
Process pools use the *spawn* start method, since TensorFlow and other threaded libraries are
not fork-safe, and their workers end when the process that started them dies, even by SIGKILL
(:func:`_die_with_parent`).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from typing import Any, TypeVar, cast

from tqdm import tqdm

from deepcurator.config import Config
from deepcurator.store import Store

T = TypeVar("T")
R = TypeVar("R")

WATCHDOG_S = 0.5  # how often a process-pool worker checks that its parent is alive (seconds)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def make_executor(cfg: Config, workers: int, kind: str = "process", store: Store | None = None) -> Iterator[Executor]:
    """An executor for per-item work.

    ``kind`` is ``"process"`` (CPU-bound work, spawn start method) or ``"thread"``
    (I/O-bound work). With ``executor.dask_scheduler`` set, a Dask client executor is used
    instead, whatever ``kind`` (:func:`deepcurator.cluster.connect`: ``store``, where the
    tasks write, must then be one every worker reaches); its tasks are submitted with
    ``pure=False`` so identical calls with side effects are not deduplicated.
    """
    if cfg.executor.dask_scheduler:
        from deepcurator.cluster import connect

        with connect(cfg, store) as client_executor:
            yield client_executor
        return
    workers = max(1, workers)
    pool: Executor = ThreadPoolExecutor(max_workers=workers) if kind == "thread" else process_pool(workers)
    with pool:
        yield pool


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A local pool of ``workers`` spawned processes that end with this process (always local,
    whatever ``executor.dask_scheduler``: for work on this machine's files)."""
    # _StartedByMainThread() arrives in the worker as the bool _die_with_parent takes (its __reduce__).
    return ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent,
                               initargs=(os.getpid(), cast(bool, _StartedByMainThread())))


class _StartedByMainThread:
    """An initializer argument that arrives in a worker as whether the thread that started
    the worker is its parent's main thread. It is pickled as the worker starts, in the
    starting thread (a ProcessPoolExecutor starts workers on demand from whichever thread
    submits), so it answers for each worker."""

    def __reduce__(self) -> tuple[type[bool], tuple[bool]]:
        return bool, (threading.current_thread() is threading.main_thread(),)


def _die_with_parent(parent_pid: int, started_by_main_thread: bool) -> None:
    """Pool initializer: end this worker as soon as its parent (the process that made the
    pool: with spawn, every worker's parent is that process) is gone.

    A parent killed with SIGKILL runs no cleanup. Its workers would wait on the task queue
    forever (each holds the queue's write end itself), and multiprocessing's resource
    tracker, which exits when the last holder of its pipe is gone, with them. Two guards:

    - Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, the kernel kills the worker the moment
      its parent dies, even inside a long C call. The kernel counts the parent *thread*
      that started the worker, not its process, so this is armed only when that thread
      is the main thread, which lasts as long as the process; a worker started by a
      thread that ends first would otherwise be killed under a live pool.
    - Everywhere: a daemon thread compares ``os.getppid()`` with ``parent_pid`` every
      :data:`WATCHDOG_S` seconds (an orphan is re-parented to init or a subreaper, so the
      pid changes) and ends the worker with ``os._exit``. This covers systems without
      ``prctl`` and workers started by other threads.

    The parent may have died before this runs; that is checked once both are in place.
    """
    if started_by_main_thread:
        _arm_parent_death_signal()
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()
    if os.getppid() != parent_pid:
        os._exit(1)


def _arm_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent thread ends; False where there is no ``prctl``."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """Exit this process at once when its parent is no longer ``parent_pid``."""
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_S)
    os._exit(1)


def run_items(
    executor: Executor,
    fn: Callable[..., R],
    items: Iterable[T],
    *args: Any,
    desc: str,
    max_in_flight: int = 256,
    unit: str = "item",
    postfix: Callable[[], str] | None = None,
) -> Iterator[tuple[T, R | BaseException]]:
    """Apply ``fn(item, *args)`` to every item on ``executor``, yielding ``(item, result)``
    as each finishes (an exception raised by ``fn`` is yielded in place of its result).

    At most ``max_in_flight`` items are submitted at once, so a long list costs no memory
    up front; a tqdm bar shows progress (counting ``unit``s, with ``postfix()`` after the
    counts when given, asked after each item has been handled).
    """
    items = list(items)
    pending: dict[Future, T] = {}
    it = iter(items)
    with tqdm(total=len(items), desc=desc, unit=unit, dynamic_ncols=True) as bar:
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
            if postfix is not None:
                bar.set_postfix_str(postfix(), refresh=False)
            bar.update(1)
            fill()
