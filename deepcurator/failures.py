"""The failure log of a stage: ``failures/<stage>.jsonl`` in the store.

One JSON object per failed item (id, stage, reason, detail, time), at most one per id: a
later failure of the same id replaces the earlier one and a success removes it. The log is
kept in memory by the stage's main process and rewritten atomically on :meth:`flush`, so a
killed stage leaves the last flushed log whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from deepcurator import layout
from deepcurator.store import Store


class FailureLog:
    """The failures of one stage, keyed by item id."""

    def __init__(self, store: Store, stage: str) -> None:
        self.store = store
        self.stage = stage
        self.key = layout.failures_key(stage)
        self.records: dict[str, dict] = {}
        if store.exists(self.key):
            for line in store.get_bytes(self.key).decode().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.records[rec["id"]] = rec
        self._dirty = False

    def add(self, item_id: str, reason: str, detail: str) -> None:
        """Record that ``item_id`` failed for ``reason`` (a short class) with a readable detail."""
        self.records[item_id] = {
            "id": item_id,
            "stage": self.stage,
            "reason": reason,
            "detail": detail[:2000],
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._dirty = True

    def clear(self, item_id: str) -> None:
        """Forget ``item_id`` (it succeeded)."""
        if self.records.pop(item_id, None) is not None:
            self._dirty = True

    def ids(self, reasons: Iterable[str] | None = None) -> set[str]:
        """Ids of failed items, optionally only those whose reason is in ``reasons``."""
        wanted = None if reasons is None else set(reasons)
        return {i for i, r in self.records.items() if wanted is None or r["reason"] in wanted}

    def flush(self) -> None:
        """Write the log to the store (atomically) if it changed."""
        if not self._dirty:
            return
        body = "".join(json.dumps(r, sort_keys=True) + "\n" for _, r in sorted(self.records.items()))
        self.store.put_bytes(self.key, body.encode())
        self._dirty = False
