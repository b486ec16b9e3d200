"""One shape for every per-item stage: plan → run on an executor with progress → failure log → summary.

A stage (download, process, the demo corpus, ``rate``) describes its run as a :class:`Plan`
(the items to work on, and how many it skips and why), hands it to :func:`run_plan` with the
function that does one item, and gets a :class:`Summary` back, which its command prints. The
executor comes from :func:`deepcurator.parallel.make_executor` (a local pool, or a Dask
cluster); the failure log (:class:`~deepcurator.failures.FailureLog`) gets one record per
failed item, loses the record when the item later succeeds, and is flushed every few seconds
and at the end, so a killed stage loses at most its last records (their items are simply
tried again). Numbers in summaries are formatted by the helpers here, once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from deepcurator.failures import FailureLog
from deepcurator.parallel import run_items

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

FLUSH_EVERY_S = 10.0  # the failure log is written at least this often during a run (seconds)


@dataclass
class Plan(Generic[T]):
    """What one run of a stage does: ``todo`` in order, and the count of items it skips by why
    (``{"already stored": 120, "failed before": 3}``)."""

    todo: list[T]
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class Summary:
    """Counts of what a stage did, skipped and failed (by reason), and a few more figures
    (``extra``, already formatted), printed at the end as one line."""

    stage: str
    done: int = 0
    skipped: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    extra: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        """``stage: done N, skipped N, failed N (reason N, ...), extra..., elapsed S s``."""
        failed = sum(self.failed.values())
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(self.failed.items()))
        parts = [f"{self.stage}: done {self.done}", f"skipped {self.skipped}",
                 f"failed {failed}" + (f" ({reasons})" if reasons else "")]
        parts += [f"{k} {v}" for k, v in self.extra.items()]
        parts.append(f"elapsed {self.elapsed_s:.1f} s")
        return ", ".join(parts)


def run_plan(
    stage: str,
    plan: Plan[T],
    work: Callable[..., R],
    *args: Any,
    executor: Executor,
    outcome: Callable[[T, R | BaseException], tuple[str | None, str]],
    item_id: Callable[[T], str] = str,
    failures: FailureLog | None = None,
    on_done: Callable[[T, R], None] | None = None,
    max_in_flight: int = 256,
    unit: str = "item",
    postfix: Callable[[], str] | None = None,
) -> Summary:
    """Run ``work(item, *args)`` for every item of ``plan`` on ``executor`` with a progress bar.

    ``outcome(item, result_or_exception)`` classifies each result: ``(None, "")`` for a
    success (then ``on_done(item, result)`` runs and the item leaves the failure log), or
    ``(reason, detail)`` for a failure (recorded in ``failures`` under ``item_id(item)``).
    Returns the summary, with the plan's skips in its ``extra`` figures. ``max_in_flight``,
    ``unit`` and ``postfix`` go to :func:`~deepcurator.parallel.run_items` (items submitted at
    once; the progress bar's unit and what it shows after the counts).
    """
    summary = Summary(stage, skipped=sum(plan.skipped.values()))
    summary.extra.update({why: str(n) for why, n in plan.skipped.items()})
    last_flush = time.monotonic()
    try:
        for item, result in run_items(executor, work, plan.todo, *args, desc=stage, max_in_flight=max_in_flight,
                                      unit=unit, postfix=postfix):
            reason, detail = outcome(item, result)
            if reason is None:
                summary.done += 1
                if failures is not None:
                    failures.clear(item_id(item))
                if on_done is not None:
                    on_done(item, result)  # type: ignore[arg-type]  # a success is never an exception
            else:
                summary.failed[reason] += 1
                logger.debug("%s: %s failed (%s): %s", stage, item_id(item), reason, detail)
                if failures is not None:
                    failures.add(item_id(item), reason, detail)
            if failures is not None and time.monotonic() - last_flush > FLUSH_EVERY_S:
                failures.flush()
                last_flush = time.monotonic()
    finally:
        if failures is not None:
            failures.flush()
    return summary


def fmt_bytes(n: float) -> str:
    """``n`` bytes as a short readable size (``512 B``, ``3.4 MB``, ``1.2 GB``)."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GB"


def fmt_hours(seconds: float) -> str:
    """Seconds of audio as hours with two decimals (``0.11 h``)."""
    return f"{seconds / 3600:.2f} h"


def fmt_speed(audio_seconds: float, elapsed_s: float) -> str:
    """How many times real time ``audio_seconds`` took in ``elapsed_s`` (``65x real time``)."""
    return f"{audio_seconds / max(elapsed_s, 1e-9):.0f}x real time"
