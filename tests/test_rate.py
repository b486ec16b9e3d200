"""`deepcurator rate`: folders searched recursively, a table sorted by score, --csv, --json,
files that cannot be scored listed as failed (not fatal), the same scores as the server's code."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deepcurator import shipped
from deepcurator.config import from_dict
from deepcurator.serving.rating import Output, sorted_rows
from deepcurator.serving.scoring import Scorer, score_file
from deepcurator.store import open_store

from tests.helpers.cli import cli_env, run_cli, write_config
from tests.helpers.holds import held, holding_ffmpeg, wait_until
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


def test_output_file_survives_a_torn_line(tmp_path: Path) -> None:
    """What a killed run leaves: whole lines are read back, a torn last one is not, and the
    next append starts on a new line."""
    for fmt in ("csv", "jsonl"):
        out = Output(tmp_path / f"rated.{fmt}", fmt)
        out.append({"file": "/m/a.mp3", "score": 71.4, "label": "good", "duration_s": 300.0, "slices": 10,
                    "truncated": False, "status": "scored", "run_id": "r1"})
        out.append({"file": "/m/b.mp3", "status": "failed", "reason": "too_short", "detail": "10 s", "run_id": "r1"})
        out.close()
        whole = out.path.read_text()
        out.path.write_text(whole + whole.splitlines()[-2][:17])  # half a row, no newline
        rows = out.read()
        assert [(r["file"], r["status"]) for r in rows] == [("/m/a.mp3", "scored"), ("/m/b.mp3", "failed")]
        assert rows[0]["score"] == 71.4 and rows[0]["slices"] == 10 and rows[0]["truncated"] is False
        out.append({"file": "/m/c.mp3", "score": 80.0, "label": "good", "duration_s": 60.0, "slices": 2,
                    "truncated": False, "status": "scored", "run_id": "r1"})
        out.close()
        assert [r["file"] for r in out.read()] == ["/m/a.mp3", "/m/b.mp3", "/m/c.mp3"]
        out.rewrite(sorted_rows(out.read()))
        assert [r["file"] for r in out.read()] == ["/m/c.mp3", "/m/a.mp3", "/m/b.mp3"]


@pytest.mark.slow
def test_interrupted_rate_resumes_without_rescoring(audio_set: dict[str, Path], tiny_model: Path,
                                                    tmp_path: Path) -> None:
    """`rate --jsonl` killed (kill -9) with one file in a worker: the results it had are in the
    file; the rerun scores only that file (and retries the failed one), then sorts the file."""
    music = tmp_path / "music"
    music.mkdir()
    for name, src in (("one.mp3", "mp3"), ("two.wav", "wav"), ("three.mp3", "mp3"), ("held.wav", "wav"),
                      ("short.mp3", "short")):
        shutil.copy(audio_set[src], music / name)
    cfg = from_dict({"store": {"path": str(tmp_path / "store")}, "serve": {"model": str(tiny_model)}})
    config = write_config(cfg, tmp_path / "config.yml")
    out = tmp_path / "rated.jsonl"
    ffmpeg, markers = holding_ffmpeg(tmp_path / "bin", ["held"])
    cmd = [sys.executable, "-m", "deepcurator", "--config", str(config), "rate", str(music), "--jsonl", str(out),
           "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(DEEPCURATOR_FFMPEG=str(ffmpeg)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def four_lines() -> bool:
            return out.exists() and out.read_text().count("\n") >= 4
        assert wait_until(lambda: "held" in held(markers) and four_lines(), timeout=300), "the run never got there"
    finally:
        proc.kill()
        proc.wait()
    first = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["file"]).name for r in first) == ["one.mp3", "short.mp3", "three.mp3", "two.wav"]

    again = run_cli("--config", str(config), "rate", str(music), "--jsonl", str(out), cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "rate: done 1, skipped 3, failed 1 (too_short 1), already rated 3" in again.stderr  # only held.wav scored
    assert "tracks/min" in again.stderr and "h of audio/min" in again.stderr and "h of audio" in again.stderr
    final = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(Path(r["file"]).name for r in final) == ["held.wav", "one.mp3", "short.mp3", "three.mp3", "two.wav"]
    scored = [r for r in final if r["status"] == "scored"]
    assert [r["score"] for r in scored] == sorted((r["score"] for r in scored), reverse=True)
    assert final[-1]["status"] == "failed" and final[-1]["reason"] == "too_short"
    before = {r["file"]: r for r in first if r["status"] == "scored"}
    assert all(r == before[r["file"]] for r in scored if r["file"] in before)  # kept, not rescored
    table = [line.split() for line in again.stdout.splitlines()[2:6]]
    assert sorted(Path(row[-1]).name for row in table) == ["held.wav", "one.mp3", "three.mp3", "two.wav"]

    rescored = run_cli("--config", str(config), "rate", str(music / "two.wav"), "--jsonl", str(out), "--rescore",
                       cwd=tmp_path, timeout=300)
    assert "rate: done 1, skipped 0" in rescored.stderr, rescored.stderr
    assert len(out.read_text().splitlines()) == 5
