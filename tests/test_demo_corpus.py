"""The demo corpus generator: determinism, the audio it writes, its dataset.csv, the faults,
resuming, and a real yt-dlp fetch through its file:// URL template."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepcurator.audio import decode, ffmpeg_exe
from deepcurator.demo import corpus as dc
from deepcurator.demo.synth import LEAD_NOTES, SR, Faults, TrackSpec, lead_line, render, scramble
from deepcurator.stages import labels

from tests.helpers.cli import run_cli

TRACKS = 6
SEED = 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    proc = run_cli("demo-corpus", "--out", str(out), "--tracks", str(TRACKS), "--seed", str(SEED), "--workers", "2",
                   cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    assert f"done {TRACKS}, skipped 0, failed 0" in proc.stdout
    return out


@pytest.fixture(scope="module")
def truth(corpus: Path) -> pd.DataFrame:
    return pd.read_csv(corpus / "truth.csv", dtype={"youtube_id": str})


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_of_each_format(seed: int) -> list[dc.CorpusTrack]:
    picked: dict[str, dc.CorpusTrack] = {}
    for track in dc.draw_corpus(seed, 60):
        picked.setdefault(track.fmt, track)
    assert set(picked) == set(dc.FORMATS)
    return [picked[f] for f in dc.FORMATS]


def short(track: dc.CorpusTrack, seconds: float = 6.0) -> dc.CorpusTrack:
    """The same track cut to a few seconds, to keep the byte-level tests fast."""
    spec = TrackSpec(**{**track.spec.__dict__, "duration": seconds})
    return dc.CorpusTrack(track.youtube_id, track.index, track.q, track.fmt, spec)


def test_same_seed_same_bytes_in_every_format_and_other_seed_differs(tmp_path: Path) -> None:
    tracks = [short(t) for t in one_of_each_format(SEED)]
    hashes = []
    for run in ("a", "b"):
        (tmp_path / run / "tracks").mkdir(parents=True)
        (tmp_path / run / "by-id").mkdir()
        for t in tracks:
            assert dc.write_track(t, str(tmp_path / run)) == "done"
        hashes.append([sha(tmp_path / run / "tracks" / t.filename) for t in tracks])
    assert hashes[0] == hashes[1]
    other = [short(t) for t in one_of_each_format(SEED + 1)]
    assert {t.youtube_id for t in other}.isdisjoint(t.youtube_id for t in tracks)
    assert not np.array_equal(render(other[0].spec), render(tracks[0].spec))
    assert dc.dataset_rows(dc.draw_corpus(SEED, 5), SEED) == dc.dataset_rows(dc.draw_corpus(SEED, 5), SEED)


def test_a_small_corpus_is_the_start_of_a_bigger_one() -> None:
    assert dc.draw_corpus(SEED, 3) == dc.draw_corpus(SEED, 8)[:3]


def test_tracks_are_stereo_44k_decodable_and_45_to_120_s(corpus: Path, truth: pd.DataFrame) -> None:
    assert len(truth) == TRACKS and truth["youtube_id"].is_unique
    for row in truth.itertuples():
        path = corpus / row.file
        assert path.suffix == f".{row.format}"
        probe = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
        assert re.search(r"Audio: \w+.*, 44100 Hz, stereo", probe.stderr), probe.stderr
        y = decode(path)
        seconds = y.size / 22050
        assert 45.0 <= seconds <= 120.5 and abs(seconds - row.duration_s) < 0.1
        assert 118 <= row.bpm <= 132
        assert np.abs(y).max() > 0.05


@pytest.mark.slow
def test_the_beat_is_at_the_tracks_tempo(truth: pd.DataFrame, corpus: Path) -> None:
    """The onset envelope's autocorrelation peaks at the beat period of the stated BPM."""
    import librosa

    row = truth.sort_values("q").iloc[-1]
    y = decode(corpus / row.file, max_duration=40.0)
    env = librosa.onset.onset_strength(y=y, sr=22050, hop_length=256)
    env = env - env.mean()
    ac = np.correlate(env, env, mode="full")[env.size - 1:]
    fps = 22050 / 256
    lags = np.arange(int(fps * 60 / 140), int(fps * 60 / 110) + 1)
    bpm = 60 * fps / lags[np.argmax(ac[lags])]
    assert abs(bpm - row.bpm) < 3, (bpm, row.bpm)


def test_dataset_has_the_real_schema_and_labels_accepts_it(corpus: Path, truth: pd.DataFrame) -> None:
    ds = pd.read_csv(corpus / "dataset.csv", dtype={"youtube_id": "string"})
    assert tuple(ds.columns) == labels.COLUMNS
    assert (ds["youtube_id"].str.len() == 11).all() and set(ds["youtube_id"]) == set(truth["youtube_id"])
    assert ds["discogs_id"].is_monotonic_increasing
    for col in ("discogs_id", "have", "want", "rating_count", "price"):
        assert pd.api.types.is_integer_dtype(ds[col]), col
    assert (ds[["have", "want", "rating_count"]] >= 6).all().all() and (ds["price"] >= 1).all()
    assert ds["rating_average"].between(1.0, 5.0).all()
    result = labels.make_labels(ds, labels.LabelsConfig(n=2))
    assert len(result.labels) == 4 and set(result.labels["label"]) == {0, 1}


def test_item_score_rises_with_q_and_some_ids_repeat() -> None:
    from scipy.stats import spearmanr

    corpus = dc.draw_corpus(11, 400)
    ds = pd.DataFrame(dc.dataset_rows(corpus, 11)).astype({"youtube_id": "string"})
    assert ds["youtube_id"].duplicated().sum() >= 5
    scored, _ = labels.score_items(ds, labels.LabelsConfig())
    per_id = scored[scored["status"] == "kept"].groupby("youtube_id")["score"].max()
    q = pd.Series({t.youtube_id: t.q for t in corpus})[per_id.index]
    rho = spearmanr(per_id.to_numpy(), q.to_numpy())[0]
    assert 0.75 < rho < 0.99  # follows quality, loosely


def test_low_q_tracks_carry_more_musical_faults_and_spectral_faults_ignore_q() -> None:
    corpus = dc.draw_corpus(5, 300)
    q = np.array([t.q for t in corpus])
    musical = np.array([sum(getattr(t.spec.faults, f) > 0 for f in dc.MUSICAL_FAULTS) for t in corpus])
    spectral = np.array([sum(getattr(t.spec.faults, f) > 0 for f in dc.SPECTRAL_FAULTS) for t in corpus])
    assert musical[q < 0.3].mean() > 1.5 and musical[q > 0.75].sum() == 0
    assert all(musical[q < 0.5] >= 1)
    # the spectral faults are as common among good as among bad tracks (0.4 each: 1.2 a track)
    assert abs(spectral[q < 0.5].mean() - spectral[q >= 0.5].mean()) < 0.3
    assert 1.0 < spectral.mean() < 1.4
    # and q moves none of their draws: the same generator state gives the same spectral faults at any q
    for seed in range(50):
        low, high = (dc.draw_faults(np.random.default_rng(seed), q) for q in (0.02, 0.98))
        assert all(getattr(low, f) == getattr(high, f) for f in dc.SPECTRAL_FAULTS)
        assert low.timing + low.pitch > 0 and high.timing == high.pitch == 0


def _spectrum_db(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame-wise power spectrum (dB) of the left channel: (frames, bins), bin freqs (Hz)."""
    frames = x[: x.shape[0] // 2048 * 2048, 0].reshape(-1, 2048) * np.hanning(2048)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return 10 * np.log10(power + 1e-12), np.fft.rfftfreq(2048, 1 / SR)


BASE = {"seed": 4, "duration": 12.0, "bpm": 124.0, "root": 40, "mode": "minor", "brightness": 0.5,
        "level_db": -14.0}


@pytest.mark.parametrize("fault", ["hiss", "muddy", "clipping"])
def test_each_spectral_fault_is_measurable(fault: str) -> None:
    clean = render(TrackSpec(**BASE))
    faulty = render(TrackSpec(**BASE, faults=Faults(**{fault: 0.8})))
    db_c, hz = _spectrum_db(clean)
    db_f, _ = _spectrum_db(faulty)
    high = hz > 9000
    if fault == "hiss":  # a noise floor: the quietest frames' highs come up
        assert np.percentile(db_f[:, high].mean(1), 10) > np.percentile(db_c[:, high].mean(1), 10) + 10
    elif fault == "muddy":  # the highs are gone
        assert db_f[:, high].mean() < db_c[:, high].mean() - 20
    else:  # flat tops, and the clipping's harmonics smear the highs
        assert (np.abs(faulty) > 0.97).mean() > 100 * max((np.abs(clean) > 0.97).mean(), 1e-6)
        assert db_f[:, high].mean() > db_c[:, high].mean() + 3


def test_the_lead_moves_by_steps_and_the_pitch_fault_scrambles_it_bar_by_bar() -> None:
    line = lead_line(np.random.default_rng(3), 32)
    assert line.shape == (32, LEAD_NOTES)
    assert (np.abs(np.diff(line, axis=1)) == 1).all()  # single scale steps
    assert np.array_equal(line[:2], line[2:4])  # a two-bar phrase, repeated
    for share in (0.0, 0.5, 1.0):
        out = scramble(np.random.default_rng(5), line, share)
        assert np.array_equal(np.sort(out, axis=1), np.sort(line, axis=1))  # each bar keeps its notes
        changed = (out != line).any(axis=1)
        assert changed.sum() == pytest.approx(share * 32, abs=8)
        if changed.any():  # steps become leaps
            assert np.abs(np.diff(out[changed], axis=1)).mean() > 2.0


@pytest.mark.parametrize("fault", ["pitch", "timing"])
def test_musical_faults_change_the_notes_not_the_sound_colour(fault: str) -> None:
    """Same music, same spectrum on average (per-band means of the log power within 1 dB),
    yet different samples: what band statistics cannot see."""
    clean = render(TrackSpec(**BASE))
    faulty = render(TrackSpec(**BASE, faults=Faults(**{fault: 1.0})))
    assert np.abs(faulty - clean).max() > 0.05
    db_c, hz = _spectrum_db(clean)
    db_f, _ = _spectrum_db(faulty)
    audible = (hz > 40) & (hz < 8000)
    # smoothed over 1/3 octave-ish groups of bins, as mel bands are
    groups = np.array_split(np.flatnonzero(audible), 64)
    diff = [abs(db_f[:, g].mean() - db_c[:, g].mean()) for g in groups]
    assert np.median(diff) < 1.0


@pytest.mark.slow
def test_rerun_resumes_and_regenerates_a_missing_track(corpus: Path, truth: pd.DataFrame) -> None:
    files = sorted((corpus / "tracks").iterdir())
    before = {p.name: (sha(p), p.stat().st_mtime_ns) for p in files}
    victim = files[0]
    victim.unlink()
    (corpus / "tracks" / f".{victim.name}.tmp").write_bytes(b"half")  # a killed earlier run
    proc = run_cli("demo-corpus", "--out", str(corpus), "--tracks", str(TRACKS), "--seed", str(SEED), cwd=corpus.parent)
    assert proc.returncode == 0, proc.stderr
    assert f"done 1, skipped {TRACKS - 1}, failed 0" in proc.stdout
    after = {p.name: (sha(p), p.stat().st_mtime_ns) for p in (corpus / "tracks").iterdir()}
    assert set(after) == set(before)
    assert after[victim.name][0] == before[victim.name][0]
    assert all(after[k] == before[k] for k in before if k != victim.name)


@pytest.mark.slow
def test_bad_track_count_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cli("demo-corpus", "--out", str(tmp_path / "c"), "--tracks", "0", cwd=tmp_path)
    assert proc.returncode == 2 and "--tracks must be at least 1" in proc.stderr


@pytest.mark.slow
def test_yt_dlp_fetches_a_track_through_the_url_template(corpus: Path, truth: pd.DataFrame, tmp_path: Path) -> None:
    yt_dlp = pytest.importorskip("yt_dlp")
    import imageio_ffmpeg

    template = dc.url_template(corpus)
    assert template.startswith("file:///") and template.endswith("/by-id/{id}")
    for row in truth.drop_duplicates("format").itertuples():
        opts = {"enable_file_urls": True, "format": "bestaudio/best", "quiet": True, "no_warnings": True,
                "noprogress": True, "outtmpl": str(tmp_path / "%(id)s.%(ext)s"),
                "postprocessors": [{"key": "FFmpegExtractAudio", "preferredcodec": "mp3"}],
                "ffmpeg_location": imageio_ffmpeg.get_ffmpeg_exe()}
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = ydl.extract_info(template.format(id=row.youtube_id), download=True)
        assert info["id"] == row.youtube_id
        mp3 = tmp_path / f"{row.youtube_id}.mp3"
        assert mp3.is_file()
        assert abs(decode(mp3).size / 22050 - row.duration_s) < 0.2


def test_contrast_pictures_show_a_high_and_a_low_q_track(corpus: Path, truth: pd.DataFrame, tmp_path: Path) -> None:
    high, low = dc.contrast_pair(truth)
    assert high["q"] == truth["q"].max() and low["q"] == truth["q"].min()
    paths = dc.contrast_pictures(corpus, tmp_path / "pics")
    assert [p.name for p in paths] == ["spectrogram_high_q.png", "spectrogram_low_q.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000


def test_artists_share_a_sound_and_part_of_q_and_split_by_artist_keeps_them_whole() -> None:
    """With --artists, an artist's tracks share tempo, key, production chain and (within ±0.05)
    brightness; q leans on the artist's talent; dataset.csv names the artist, and
    train.split_by: artist never puts one artist in two splits. Without, nothing changes."""
    from deepcurator.training.splits import make_splits, track_groups

    assert dc.draw_corpus(11, 30) == dc.draw_corpus(11, 30, artists=0)
    corpus = dc.draw_corpus(11, 300, artists=30)
    assert all(t.artist is not None for t in corpus)
    by: dict[int, list[dc.CorpusTrack]] = {}
    for t in corpus:
        assert t.artist is not None
        by.setdefault(t.artist.number, []).append(t)
    assert len(by) == 30
    for tracks in by.values():
        spec0 = tracks[0].spec
        for t in tracks:
            assert (t.spec.bpm, t.spec.root, t.spec.mode) == (spec0.bpm, spec0.root, spec0.mode)
            assert all(getattr(t.spec.faults, f) == getattr(spec0.faults, f) for f in dc.SPECTRAL_FAULTS)
            assert abs(t.spec.brightness - spec0.brightness) <= 0.1 + 1e-9
    q = pd.DataFrame({"artist": [t.artist.number for t in corpus if t.artist], "q": [t.q for t in corpus]})
    within = q.groupby("artist")["q"].var().mean()
    assert within < 0.5 * q["q"].var()  # most of q's variance is the artist's
    talent = np.array([dc.draw_artist(11, a).talent for a in range(30)])
    brightness = np.array([dc.draw_artist(11, a).brightness for a in range(30)])
    assert abs(np.corrcoef(talent, brightness)[0, 1]) < 0.5  # sound and talent drawn independently

    ds = pd.DataFrame(dc.dataset_rows(corpus, 11)).astype({"youtube_id": "string"})
    assert {"artist_id", "artist_name"} <= set(ds.columns)
    result = labels.make_labels(ds, labels.LabelsConfig(n=90))
    groups = track_groups(result.scores.dropna(subset=["youtube_id"]), "artist")
    splits = make_splits(result.labels[["youtube_id", "label"]], 0.2, 0.25, 0, groups=groups)
    artist = ds.drop_duplicates("youtube_id").set_index("youtube_id")["artist_id"]
    assert splits.assign(artist=splits["youtube_id"].map(artist)).groupby("artist")["split"].nunique().max() == 1
    assert set(splits["split"]) == {"train", "val", "test"}
