"""`deepcurator rate`: folders searched recursively, a table sorted by score, --csv, --json,
files that cannot be scored listed as failed (not fatal), the same scores as the server's code."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from deepcurator import shipped
from deepcurator.config import from_dict
from deepcurator.serving.scoring import Scorer, score_file
from deepcurator.store import open_store

from tests.helpers.cli import run_cli, write_config
from tests.helpers.serving import RUN_ID, publish_run


@pytest.fixture
def music(tmp_path: Path, audio_set: dict[str, Path]) -> Path:
    """A music folder with a sub-folder, two good tracks and three unreadable files."""
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    shutil.copy(audio_set["mp3"], root / "sub" / "track.mp3")
    shutil.copy(audio_set["wav"], root / "song.wav")
    for name in ("short", "text", "truncated"):
        shutil.copy(audio_set[name], root / audio_set[name].name)
    (root / "cover.jpg").write_bytes(b"not audio, not listed")
    return root


@pytest.mark.slow
def test_rate_folder_table_csv_and_json(music: Path, tiny_model: Path, tiny_scorer: Scorer, tmp_path: Path) -> None:
    cfg = from_dict({"store": {"path": str(tmp_path / "store")}})
    publish_run(open_store(cfg), tiny_model)
    config = write_config(cfg, tmp_path / "config.yml")
    proc = run_cli("--config", str(config), "rate", str(music), "--csv", str(tmp_path / "out" / "rated.csv"),
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"model run {RUN_ID} (sha256 {shipped.file_sha256(tiny_model)}), trained on unknown")
    assert lines[0].endswith("; aggregation mean")
    table = [line.split() for line in lines[2:4]]
    expected = {str(music / "sub" / "track.mp3"): score_file(tiny_scorer, music / "sub" / "track.mp3").score,
                str(music / "song.wav"): score_file(tiny_scorer, music / "song.wav").score}
    assert [row[-1] for row in table] == sorted(expected, key=lambda f: -expected[f])
    for row in table:
        assert float(row[0]) == pytest.approx(expected[row[-1]], abs=0.011)
    failed = [line for line in lines if line.startswith("failed")]
    assert len(failed) == 3 and any("10.0 s long" in line for line in failed)
    assert "cover.jpg" not in proc.stdout
    assert "rate: done 2, skipped 0, failed 3 (too_short 2, undecodable 1)" in proc.stderr
    with open(tmp_path / "out" / "rated.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["status"] for r in rows] == ["scored", "scored", "failed", "failed", "failed"]
    assert float(rows[0]["score"]) >= float(rows[1]["score"])

    proc = run_cli("--config", str(config), "rate", str(music / "song.wav"), str(music / "missing.mp3"), "--json",
                   cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["run_id"] == RUN_ID
    assert [r["file"] for r in body["scored"]] == [str(music / "song.wav")]
    assert body["failed"] == [{"file": str(music / "missing.mp3"), "reason": "not_found",
                               "detail": f"{music / 'missing.mp3'}: not found"}]


def test_rate_without_a_model(tmp_path: Path, music: Path) -> None:
    config = write_config(from_dict({"store": {"path": str(tmp_path / "empty")}}), tmp_path / "config.yml")
    proc = run_cli("--config", str(config), "rate", str(music), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "deepcurator train" in proc.stderr
