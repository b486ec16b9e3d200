"""Rating audio files offline with a loaded model: the batch side of the service, built to rate
a whole music library.

Each file is scored with the same values as ``/predict``: the same decoding and slices
(:func:`~deepcurator.serving.scoring.track_input`) and the same model calls, one slice at a
time (:func:`~deepcurator.serving.scoring.score_input`), so a file's score is the server's,
bit for bit. The work is pipelined through the shared stage shape (:mod:`deepcurator.stagerun`):

- **decoding and features run in worker processes** (spawn; one per core by default), a few
  files ahead, while **the model scores** the files already prepared **in this process**
  (TensorFlow is loaded once, and not fork-safe), so the cores stay busy with both;
- **results are appended as they come** to the output file (``--csv`` or ``--jsonl``), one
  line each, flushed: a run that is interrupted, even by ``kill -9``, keeps every result it
  had; a torn last line is ignored;
- **a rerun with the same output skips the files already rated by the same model** (a file
  rated by another model, or that failed, is tried again; ``rescore`` rates everything);
  when the run ends, the output is rewritten (atomically) sorted by score, the failed files
  last, one row per file;
- progress shows files and hours of audio with an ETA, and the summary the throughput in
  tracks and hours of audio per minute.

Failures (by reason: ``not_found``, ``too_short``, ``too_long``, ``timeout``, ``undecodable``,
``unreadable``) never stop the run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deepcurator.audio import DecodeError, DecodeTimeoutError
from deepcurator.config import ServeConfig
from deepcurator.errors import ConfigError, TooLong
from deepcurator.serving.scoring import Scorer, TooShort, TrackInput, TrackScore, score_input, track_input
from deepcurator.stagerun import Plan, Summary, fmt_hours, fmt_speed, run_plan

STAGE = "rate"
AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff",
                            ".wma", ".webm", ".mka", ".mp4", ".mp2", ".ac3", ".alac", ".ape", ".wv"})
FIELDS = ["file", "score", "label", "duration_s", "slices", "truncated", "status", "reason", "detail", "run_id"]
FORMATS = ("csv", "jsonl")
AHEAD_PER_WORKER = 2  # files prepared ahead of the model, per worker (bounds the memory of waiting inputs)


@dataclass(frozen=True)
class Rated:
    """A scored file: its score 0–100, label, decoded duration (s), slices, and whether only
    the first ``serve.max_duration_s`` were scored."""

    file: str
    score: float
    label: str
    duration_s: float
    slices: int
    truncated: bool


@dataclass(frozen=True)
class Failed:
    """A file that could not be scored, with the reason class and the readable detail."""

    file: str
    reason: str
    detail: str


@dataclass
class RateResult:
    """The rated files sorted by score (best first; earlier runs' too, when resumed), the
    failed ones in order, the summary, and how much was done in this run."""

    rated: list[Rated]
    failed: list[Failed]
    summary: Summary
    run_id: str
    aggregation: str
    audio_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"run_id": self.run_id, "aggregation": self.aggregation,
                "scored": [asdict(r) for r in self.rated], "failed": [asdict(f) for f in self.failed]}


def find_audio(paths: list[str]) -> list[Path]:
    """Named files as given, plus every file with an audio suffix under named folders (sorted)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        else:
            found.append(p)
    return list(dict.fromkeys(found))


def rate_file(path: Path, scorer: Scorer, s: ServeConfig) -> TrackScore:
    """Score one file as the server would (``serve`` limits apply), all in this process."""
    return score_input(scorer, _track_input(path, s))


_worker_ready = False


def prepare(path: Path, s: ServeConfig) -> TrackInput:
    """Decode and featurise one file (``serve`` limits apply): the worker processes' part."""
    global _worker_ready
    if not _worker_ready:  # once per worker: one BLAS thread (the cores are taken), the decoder's notes filtered
        from threadpoolctl import threadpool_limits

        from deepcurator import native_stderr

        threadpool_limits(1, user_api="blas")
        native_stderr.install()
        _worker_ready = True
    return _track_input(path, s)


def _track_input(path: Path, s: ServeConfig) -> TrackInput:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    return track_input(path, decode_timeout=s.decode_timeout_s, max_duration_s=s.max_duration_s,
                       over_duration=s.over_duration)


def failure_reason(exc: BaseException) -> str:
    """The reason class of an exception raised by :func:`prepare` or :func:`rate_file`."""
    for kind, reason in ((FileNotFoundError, "not_found"), (TooShort, "too_short"), (TooLong, "too_long"),
                         (DecodeTimeoutError, "timeout"), (DecodeError, "undecodable"), (OSError, "unreadable")):
        if isinstance(exc, kind):
            return reason
    return "error"


class Output:
    """The results file of a run, appended as results come and read back by a rerun: CSV with
    the columns :data:`FIELDS`, or JSON lines with the same keys."""

    def __init__(self, path: Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        self.fmt = fmt or ("jsonl" if self.path.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv")
        if self.fmt not in FORMATS:
            raise ConfigError(f"rate output format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        self._fh: io.TextIOWrapper | None = None

    def read(self) -> list[dict[str, Any]]:
        """The rows in the file, in order (none when there is no file); a torn or malformed
        line (a run killed while writing it) is skipped."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        rows: list[dict[str, Any]] = []
        if self.fmt == "jsonl":
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict) and row.get("file") and row.get("status") in ("scored", "failed"):
                    rows.append(row)
            return rows
        complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
        for row in csv.DictReader(io.StringIO(complete)):
            if row.get("file") and row.get("status") in ("scored", "failed"):
                rows.append(_typed(row))
        return rows

    def append(self, row: dict[str, Any]) -> None:
        """Add one row at the end, flushed (a header first when the CSV file is new)."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._fh = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
            if not fresh and not self.path.read_bytes().endswith(b"\n"):
                self._fh.write("\n")  # after a torn line: start a new one
            if fresh and self.fmt == "csv":
                self._fh.write(",".join(FIELDS) + "\n")
        self._fh.write(self._line(row))
        self._fh.flush()

    def rewrite(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file by ``rows`` (atomically)."""
        from deepcurator.store import atomic_write

        self.close()
        text = "".join(self._line(r) for r in rows)
        if self.fmt == "csv":
            text = ",".join(FIELDS) + "\n" + text
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda out: out.write(text.encode()))

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _line(self, row: dict[str, Any]) -> str:
        full = {k: row.get(k, "") for k in FIELDS}
        if self.fmt == "jsonl":
            return json.dumps(full, ensure_ascii=False) + "\n"
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n").writerow(full)
        return buf.getvalue()


def _typed(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row with its numbers and booleans as such."""
    out: dict[str, Any] = dict(row)
    if row.get("status") == "scored":
        try:
            out.update(score=float(row["score"]), duration_s=float(row["duration_s"]), slices=int(row["slices"]),
                       truncated=row["truncated"] in ("True", "true", "1"))
        except (KeyError, TypeError, ValueError):
            out["status"] = "torn"
    return out


def _row(item: Rated | Failed, run_id: str) -> dict[str, Any]:
    if isinstance(item, Rated):
        return {**asdict(item), "status": "scored", "reason": "", "detail": "", "run_id": run_id}
    return {**asdict(item), "status": "failed", "score": "", "label": "", "duration_s": "", "slices": "",
            "truncated": "", "run_id": run_id}


def _from_row(row: dict[str, Any]) -> Rated | Failed:
    if row["status"] == "scored":
        return Rated(row["file"], float(row["score"]), row["label"], float(row["duration_s"]), int(row["slices"]),
                     bool(row["truncated"]))
    return Failed(row["file"], row.get("reason") or "error", row.get("detail") or "")


def sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per file (its last), the scored ones by score (best first), then the failed ones."""
    latest = {r["file"]: r for r in rows if r.get("status") in ("scored", "failed")}
    scored = sorted((r for r in latest.values() if r["status"] == "scored"), key=lambda r: (-float(r["score"]),
                                                                                            r["file"]))
    return scored + [r for r in latest.values() if r["status"] == "failed"]


def rate(files: list[Path], scorer: Scorer, s: ServeConfig, *, workers: int | None = None,
         output: Output | None = None, rescore: bool = False,
         executor_factory: Callable[[int], Any] | None = None) -> RateResult:
    """Score ``files``: decoding and features in ``workers`` processes (default: one per core),
    the model in this process; each result appended to ``output`` as it comes. With an
    ``output`` that already rates some of ``files`` with this model, those are skipped
    (unless ``rescore``)."""
    from deepcurator.parallel import default_workers, process_pool

    workers = max(1, workers or default_workers())
    earlier = output.read() if output is not None else []
    done_before = {r["file"]: r for r in earlier
                   if r["status"] == "scored" and r.get("run_id") == scorer.run_id}
    if rescore:
        done_before = {}
    todo = [f for f in files if str(f) not in done_before]
    plan = Plan(todo, {"already rated": len(files) - len(todo)})
    total = {"audio_s": 0.0, "decode_s": 0.0, "features_s": 0.0, "inference_s": 0.0}
    new_rows: list[dict[str, Any]] = []

    def outcome(path: Path, result: TrackInput | BaseException) -> tuple[str | None, str]:
        if not isinstance(result, BaseException):
            try:
                scored = score_input(scorer, result)
            except Exception as exc:  # noqa: BLE001 - one file's failure never stops the run
                result = exc
        if isinstance(result, BaseException):
            reason = failure_reason(result)
            detail = str(result) if reason != "error" else f"{type(result).__name__}: {result}"
            row = _row(Failed(str(path), reason, detail), scorer.run_id)
            outcome_: tuple[str | None, str] = (reason, detail)
        else:
            t = scored.timings
            for key, value in (("audio_s", scored.duration_s), ("decode_s", t.decode_s),
                               ("features_s", t.features_s), ("inference_s", t.inference_s)):
                total[key] += value
            row = _row(Rated(str(path), round(scored.score, 2), scored.label, round(scored.duration_s, 2),
                             len(scored.slices), scored.truncated), scorer.run_id)
            outcome_ = (None, "")
        new_rows.append(row)
        if output is not None:
            output.append(row)
        return outcome_

    def progress() -> str:
        return f"{fmt_hours(total['audio_s'])} of audio"

    factory = executor_factory or process_pool
    try:
        with factory(workers) as pool:
            summary = run_plan(STAGE, plan, prepare, s, executor=pool, outcome=outcome,
                               max_in_flight=workers * AHEAD_PER_WORKER, unit="file", postfix=progress)
    finally:
        if output is not None:
            output.close()
    rows = sorted_rows([*earlier, *new_rows]) if output is not None else sorted_rows(new_rows)
    if output is not None:
        output.rewrite(rows)
    wanted = {str(f) for f in files}
    mine = [r for r in rows if r["file"] in wanted]
    minutes = max(summary.elapsed_s, 1e-9) / 60
    summary.extra["model"] = scorer.run_id
    summary.extra["audio"] = fmt_hours(total["audio_s"])
    summary.extra["throughput"] = (f"{summary.done / minutes:.1f} tracks/min, "
                                   f"{total['audio_s'] / 3600 / minutes:.2f} h of audio/min "
                                   f"({fmt_speed(total['audio_s'], summary.elapsed_s)})")
    items = [_from_row(r) for r in mine]
    return RateResult([i for i in items if isinstance(i, Rated)], [i for i in items if isinstance(i, Failed)],
                      summary, scorer.run_id, scorer.aggregation, total["audio_s"], total)
