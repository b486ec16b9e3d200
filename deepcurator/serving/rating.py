"""Rating audio files offline with a loaded model: the batch side of the service.

Each file is scored by the same code as ``/predict`` (:func:`~deepcurator.serving.scoring.score_file`)
through the shared stage shape (:mod:`deepcurator.stagerun`): plan (the files), run with
progress, failures (by reason: ``not_found``, ``too_short``, ``too_long``, ``timeout``,
``undecodable``, ``unreadable``), summary. A file that cannot be scored never stops the run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from deepcurator.audio import DecodeError, DecodeTimeoutError
from deepcurator.config import ServeConfig
from deepcurator.errors import TooLong
from deepcurator.serving.scoring import Scorer, TooShort, TrackScore, score_file
from deepcurator.stagerun import Plan, Summary, run_plan

STAGE = "rate"
AUDIO_SUFFIXES = frozenset({".mp3", ".wav", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff",
                            ".wma", ".webm", ".mka", ".mp4", ".mp2", ".ac3", ".alac", ".ape", ".wv"})


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
    """The rated files sorted by score (best first), the failed ones in order, the summary."""

    rated: list[Rated]
    failed: list[Failed]
    summary: Summary
    run_id: str
    aggregation: str

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
    """Score one file as the server would (``serve`` limits apply)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found")
    return score_file(scorer, path, decode_timeout=s.decode_timeout_s, max_duration_s=s.max_duration_s,
                      over_duration=s.over_duration)


def failure_reason(exc: BaseException) -> str:
    """The reason class of an exception raised by :func:`rate_file`."""
    for kind, reason in ((FileNotFoundError, "not_found"), (TooShort, "too_short"), (TooLong, "too_long"),
                         (DecodeTimeoutError, "timeout"), (DecodeError, "undecodable"), (OSError, "unreadable")):
        if isinstance(exc, kind):
            return reason
    return "error"


def rate(files: list[Path], scorer: Scorer, s: ServeConfig) -> RateResult:
    """Score ``files`` one after another (the model runs one inference at a time; decoding and
    features overlap with it inside :func:`score_file`)."""
    rated: list[Rated] = []
    failed: list[Failed] = []

    def outcome(path: Path, result: TrackScore | BaseException) -> tuple[str | None, str]:
        if isinstance(result, BaseException):
            reason = failure_reason(result)
            detail = str(result) if reason != "error" else f"{type(result).__name__}: {result}"
            failed.append(Failed(str(path), reason, detail))
            return reason, detail
        rated.append(Rated(str(path), round(result.score, 2), result.label, round(result.duration_s, 2),
                           len(result.slices), result.truncated))
        return None, ""

    with ThreadPoolExecutor(max_workers=1) as pool:
        summary = run_plan(STAGE, Plan(files), rate_file, scorer, s, executor=pool, outcome=outcome)
    rated.sort(key=lambda r: (-r.score, r.file))
    summary.extra["model"] = scorer.run_id
    return RateResult(rated, failed, summary, scorer.run_id, scorer.aggregation)

