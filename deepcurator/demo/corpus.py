"""The demo corpus: synthetic tracks playing the part of YouTube, a Discogs-like table.

Layout of a corpus folder::

    tracks/<youtube_id>.<wav|ogg|flac>   the audio (stereo, 44,100 Hz)
    by-id/<youtube_id>                   a relative symlink to the track (what yt-dlp fetches)
    dataset.csv                          the real table's schema: discogs_id, have, want,
                                         rating_average, rating_count, price, youtube_id
    truth.csv                            the hidden truth (q, faults, format, ...); the pipeline
                                         never reads it

Every track has a hidden musical quality ``q`` in [0, 1], carried by the faults of pitch and
time only (:data:`MUSICAL_FAULTS`, :mod:`deepcurator.demo.synth`): the lead line played with
its notes in the wrong order in a share of the bars (``pitch``) and off the grid (``timing``).
Each is present with a probability rising with ``1 - q`` and a strength scaling with
``1 - q``; every track with ``q < 0.5`` has the pitch fault. Both are local and structural:
they leave the notes, rhythm, envelopes and tempo of the track as they were, so features that
are statistics over frames (band means and deviations, MFCC, contrast and chroma statistics,
onset strength, tempo stability) barely see them, while a convolutional network can see a
run become a zigzag. The faults a spectrogram's band statistics show
(:data:`SPECTRAL_FAULTS`: hiss, a muddy low-pass, clipping), like brightness and loudness, are
drawn **independently of q** (:func:`draw_faults`), so they add variance, not signal: a model
has to hear the playing, not the production. Popularity follows
quality loosely: a latent ``z = q + N(0, pop_noise)`` drives want/have, the rating and the
price, each with its own noise, so the item score of :mod:`deepcurator.stages.labels` rises with ``q``.

Track ``i`` of seed ``s`` depends on ``(s, i)`` only: a small corpus is the start of a big one.

**Artists** (``artists=K``, off by default and in the demo): each track is by one of K
artists (:class:`Artist`), and an artist's tracks share a sound (tempo, key, brightness,
loudness and a production chain: the same hiss, low-pass and clipping) and part of their
quality: ``q = 0.6 × the artist's talent + 0.4 × the track's own draw``. Talent and sound are
drawn independently, so across artists the sound still says nothing about q; but a model that
has heard an artist's other tracks can recognise the sound and recall the talent. That is
what a split by track rewards and a split by artist (``train.split_by: artist``, with the
``artist_id`` and ``artist_name`` columns this adds to dataset.csv) does not.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from deepcurator.config import Config
from deepcurator.demo.synth import FAULTS, SR, Faults, TrackSpec
from deepcurator.errors import InputError
from deepcurator.failures import FailureLog
from deepcurator.parallel import default_workers, make_executor
from deepcurator.stagerun import Plan, Summary, run_plan
from deepcurator.store import LocalStore

if TYPE_CHECKING:
    import pandas as pd

STAGE = "demo-corpus"

ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))
FORMATS = ("flac", "ogg", "wav")
FORMAT_P = (0.5, 0.12, 0.38)  # Vorbis encoding costs ~10 times the synthesis: fewer ogg
DUPLICATE_P = 0.04  # share of ids linked from a second release, as in the real table
POP_NOISE = 0.12
SPECTRAL_FAULTS = ("hiss", "muddy", "clipping")  # the faults band statistics show: independent of q
MUSICAL_FAULTS = ("timing", "pitch")  # the faults that carry q
SPECTRAL_P = 0.4  # chance of each spectral fault, whatever q
ARTIST_SHARE = 0.6  # with artists: the share of q that is the artist's talent
ARTIST_ID_BASE = 900_000  # artist ids in dataset.csv: ARTIST_ID_BASE + the artist's number


@dataclass(frozen=True)
class CorpusTrack:
    """One track of the corpus: its id, hidden quality, file format and synthesis spec."""

    youtube_id: str
    index: int
    q: float
    fmt: str
    spec: TrackSpec
    artist: Artist | None = None

    @property
    def filename(self) -> str:
        return f"{self.youtube_id}.{self.fmt}"


def youtube_like_id(rng: np.random.Generator) -> str:
    """An 11-character id from YouTube's alphabet (never starting with '-', which a command
    line would take for an option)."""
    first = rng.choice(ID_ALPHABET[:-2])
    return first + "".join(rng.choice(ID_ALPHABET, 10))


def draw_faults(rng: np.random.Generator, q: float) -> Faults:
    """Faults of a track of quality ``q``.

    The musical faults (timing, pitch) carry q, with severity ``1 - q``: each is present with
    probability ``clip(2.2 severity - 0.6, 0, 0.95)`` (none above q = 0.73), strength
    ``clip(severity × U(0.8, 1.3), 0.15, 1)``; below q = 0.5 the pitch fault is always present
    (it is the one a spectrogram shows: the timing fault's jitter is half a frame).
    The spectral faults (hiss, muddy, clipping) do not depend on q: each is present with
    probability :data:`SPECTRAL_P`, strength ``U(0.15, 1)``. The draws are made in the same
    order for every q, so q moves no spectral draw."""
    severity = 1.0 - q
    musical = rng.random(len(MUSICAL_FAULTS)) < np.clip(2.2 * severity - 0.6, 0.0, 0.95)
    rng.integers(len(MUSICAL_FAULTS))  # (a draw kept so that the later draws stay where they were)
    if severity > 0.5:
        musical[MUSICAL_FAULTS.index("pitch")] = True
    m_strength = np.clip(severity * rng.uniform(0.8, 1.3, len(MUSICAL_FAULTS)), 0.15, 1.0) * musical
    spectral = rng.random(len(SPECTRAL_FAULTS)) < SPECTRAL_P
    s_strength = rng.uniform(0.15, 1.0, len(SPECTRAL_FAULTS)) * spectral
    strengths = dict(zip(MUSICAL_FAULTS, m_strength, strict=True)) | dict(zip(SPECTRAL_FAULTS, s_strength, strict=True))
    return Faults(**{name: round(float(strengths[name]), 3) for name in FAULTS})


@dataclass(frozen=True)
class Artist:
    """An artist of a corpus with artists: a talent (0..1, the artist's share of its tracks'
    q), a sound its tracks share, and a production chain (spectral fault strengths)."""

    number: int
    talent: float
    bpm: float
    root: int
    mode: str
    brightness: float
    level_db: float
    hiss: float
    muddy: float
    clipping: float

    @property
    def artist_id(self) -> int:
        return ARTIST_ID_BASE + self.number

    @property
    def name(self) -> str:
        return f"Demo Artist {self.number:03d}"


def draw_artist(seed: int, number: int) -> Artist:
    """Artist ``number`` of the corpus of ``seed``: talent and sound drawn independently."""
    rng = np.random.default_rng([seed, number, 7])
    talent = round(float(rng.uniform(0.0, 1.0)), 4)
    spectral = (rng.random(len(SPECTRAL_FAULTS)) < SPECTRAL_P) * rng.uniform(0.15, 1.0, len(SPECTRAL_FAULTS))
    chain = dict(zip(SPECTRAL_FAULTS, (round(float(v), 3) for v in spectral), strict=True))
    return Artist(number, talent, bpm=float(rng.integers(118, 133)), root=int(rng.integers(33, 45)),
                  mode=str(rng.choice(["major", "minor"])), brightness=round(float(rng.uniform(0.0, 1.0)), 3),
                  level_db=round(float(rng.uniform(-18.0, -11.0)), 2), hiss=chain["hiss"], muddy=chain["muddy"],
                  clipping=chain["clipping"])


def artist_of(seed: int, index: int, artists: int) -> int:
    """The artist (0..artists-1) of track ``index``."""
    return int(np.random.default_rng([seed, index, 3]).integers(artists))


def by_artist(track: CorpusTrack, artist: Artist, rng: np.random.Generator) -> CorpusTrack:
    """``track`` as ``artist``'s: the artist's sound (brightness within ±0.05, level within
    ±1 dB) and production chain, and ``q`` pulled toward the artist's talent; the musical
    faults are drawn again for the new q."""
    q = round(ARTIST_SHARE * artist.talent + (1 - ARTIST_SHARE) * track.q, 4)
    faults = dataclasses.replace(draw_faults(rng, q), hiss=artist.hiss, muddy=artist.muddy,
                                 clipping=artist.clipping)
    spec = dataclasses.replace(
        track.spec, bpm=artist.bpm, root=artist.root, mode=artist.mode,
        brightness=round(float(np.clip(artist.brightness + rng.uniform(-0.05, 0.05), 0.0, 1.0)), 3),
        level_db=round(artist.level_db + float(rng.uniform(-1.0, 1.0)), 2), faults=faults)
    return dataclasses.replace(track, q=q, spec=spec, artist=artist)


def draw_track(seed: int, index: int, artists: int = 0) -> CorpusTrack:
    """Track ``index`` of the corpus of ``seed`` (deterministic in both), by one of
    ``artists`` artists when that is not 0."""
    track = _draw_track(seed, index)
    if not artists:
        return track
    return by_artist(track, draw_artist(seed, artist_of(seed, index, artists)),
                     np.random.default_rng([seed, index, 4]))


def _draw_track(seed: int, index: int) -> CorpusTrack:
    rng = np.random.default_rng([seed, index])
    youtube_id = youtube_like_id(rng)
    q = round(float(rng.uniform(0.0, 1.0)), 4)
    spec = TrackSpec(
        seed=int(rng.integers(2**31)),
        duration=round(float(rng.uniform(45.0, 120.0)), 2),
        bpm=float(rng.integers(118, 133)),
        root=int(rng.integers(33, 45)),
        mode=str(rng.choice(["major", "minor"])),
        brightness=round(float(rng.uniform(0.0, 1.0)), 3),
        level_db=round(float(rng.uniform(-18.0, -11.0)), 2),
        faults=draw_faults(rng, q),
    )
    return CorpusTrack(youtube_id, index, q, str(rng.choice(FORMATS, p=FORMAT_P)), spec)


def draw_corpus(seed: int, tracks: int, artists: int = 0) -> list[CorpusTrack]:
    """The corpus' tracks (ids are unique: a rare collision is redrawn further on)."""
    out: list[CorpusTrack] = []
    seen: set[str] = set()
    index = 0
    while len(out) < tracks:
        track = draw_track(seed, index, artists)
        index += 1
        if track.youtube_id not in seen:
            seen.add(track.youtube_id)
            out.append(track)
    return out


# --- the Discogs side ---------------------------------------------------------------------

def release_row(rng: np.random.Generator, q: float, pop_noise: float) -> dict[str, float]:
    """have/want/rating/price of one release carrying a track of quality ``q``.

    The ranges mimic the real table (medians: have 169, want 92, rating 4.4 from 34 votes,
    price 7; all at least 6 but the price, at least 1).
    """
    z = q + rng.normal(0.0, pop_noise) - 0.5
    have = max(6, round(np.exp(rng.normal(np.log(170), 0.6))))
    want = max(6, round(have * np.exp(np.log(0.55) + 1.6 * z + rng.normal(0.0, 0.25))))
    count = max(6, round(np.exp(rng.normal(np.log(34), 0.7))))
    rating = float(np.clip(4.37 + 0.9 * z + rng.normal(0.0, 0.12), 1.3, 5.0))
    price = max(1, round(np.exp(np.log(7) + 2.0 * z + rng.normal(0.0, 0.35))))
    return {"have": have, "want": want, "rating_average": round(rating, 2), "rating_count": count, "price": price}


def dataset_rows(corpus: list[CorpusTrack], seed: int, pop_noise: float = POP_NOISE) -> list[dict[str, object]]:
    """The dataset.csv rows (sorted by discogs_id); a few ids appear on two releases."""
    rows = []
    for track in corpus:
        rng = np.random.default_rng([seed, track.index, 1])
        releases = 2 if rng.random() < DUPLICATE_P else 1
        for _ in range(releases):
            discogs_id = int(rng.integers(4, 10_500_000))
            artist = ({"artist_id": track.artist.artist_id, "artist_name": track.artist.name}
                      if track.artist is not None else {})
            rows.append({"discogs_id": discogs_id, **release_row(rng, track.q, pop_noise),
                         "youtube_id": track.youtube_id, **artist})
    rows.sort(key=lambda r: (r["discogs_id"], r["youtube_id"]))
    return rows


def truth_rows(corpus: list[CorpusTrack]) -> list[dict[str, object]]:
    """The hidden truth, one row per track."""
    out = []
    for t in corpus:
        faults = asdict(t.spec.faults)
        out.append({"youtube_id": t.youtube_id, "q": t.q, "faults": "+".join(t.spec.faults.present()) or "none",
                     **faults, "format": t.fmt, "file": f"tracks/{t.filename}", "duration_s": t.spec.duration,
                     "bpm": t.spec.bpm, "key": t.spec.key, "brightness": t.spec.brightness,
                     "level_db": t.spec.level_db, "seed": t.spec.seed,
                     **({"artist_id": t.artist.artist_id, "talent": t.artist.talent} if t.artist else {})})
    return out


# --- writing ------------------------------------------------------------------------------

def to_pcm16(x: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16, shape kept."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


def encode(pcm: np.ndarray, path: Path, fmt: str) -> None:
    """Write int16 stereo ``pcm`` (shape ``(n, 2)``) to ``path`` as ``fmt``.

    wav and flac through soundfile; ogg (Vorbis) through ffmpeg with bit-exact flags, so
    the same samples always give the same bytes.
    """
    if fmt == "ogg":
        from deepcurator.audio import ffmpeg_exe

        cmd = [ffmpeg_exe(), "-nostdin", "-y", "-hide_banner", "-loglevel", "error", "-f", "s16le", "-ar", str(SR),
               "-ac", "2", "-i", "-", "-c:a", "libvorbis", "-b:a", "96k", "-fflags", "+bitexact",
               "-flags:a", "+bitexact", "-map_metadata", "-1", "-f", "ogg", os.fspath(path)]
        proc = subprocess.run(cmd, input=pcm.tobytes(), capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not encode {path.name}: {proc.stderr.decode(errors='replace').strip()}")
        return
    import soundfile as sf

    sf.write(os.fspath(path), pcm, SR, format=fmt.upper(), subtype="PCM_16")


def write_track(track: CorpusTrack, corpus_dir: str) -> str:
    """Synthesise and write one track (atomically) with its by-id link; ``"skipped"`` when
    the file is already there, else ``"done"``."""
    from deepcurator.demo.synth import render

    root = Path(corpus_dir)
    final = root / "tracks" / track.filename
    link = root / "by-id" / track.youtube_id
    status = "skipped"
    if not final.exists():
        tmp = final.with_name(f".{track.filename}.tmp")
        try:
            encode(to_pcm16(render(track.spec)), tmp, track.fmt)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        status = "done"
    if not link.is_symlink():
        tmp_link = link.with_name(f".{track.youtube_id}.tmp")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(Path("..") / "tracks" / track.filename)
        os.replace(tmp_link, link)
    return status


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    """Write rows as CSV atomically (floats as written in the rows, already rounded)."""
    import pandas as pd

    tmp = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows).to_csv(tmp, index=False)
    os.replace(tmp, path)


def url_template(corpus_dir: str | os.PathLike[str]) -> str:
    """The ``download.url_template`` that makes yt-dlp fetch from the corpus:
    ``file:///…/by-id/{id}`` (yt-dlp needs ``enable_file_urls``). The by-id entries have no
    extension, so yt-dlp's generic extractor takes them as direct links (ext ``unknown_video``)
    and ffmpeg finds the real format from the content."""
    return Path(corpus_dir).absolute().as_uri() + "/by-id/{id}"


# --- pictures -----------------------------------------------------------------------------

def contrast_pair(truth: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """The highest-q track and the lowest-q track. Their spectral faults, if any, are chance:
    q shows in the timing and the notes, not in the spectrum's colour."""
    ranked = truth.sort_values(["q", "youtube_id"])
    return ranked.iloc[-1], ranked.iloc[0]


def contrast_pictures(corpus_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Save log-mel pictures (PNG) of a high-q and a low-q track of the corpus, titled with q
    and the faults present, computed as the pipeline does (audio.decode + features.logmel).
    Returns the two paths: ``out_dir/spectrogram_high_q.png``, ``out_dir/spectrogram_low_q.png``."""
    import pandas as pd

    from deepcurator import plots
    from deepcurator.audio import decode
    from deepcurator.features import logmel

    root = Path(corpus_dir)
    truth = pd.read_csv(root / "truth.csv", dtype={"youtube_id": str})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, row in zip(("high_q", "low_q"), contrast_pair(truth), strict=True):
        faults = [f"{f} {row[f]:.2f}" for f in FAULTS if row[f] > 0]
        title = f"{row['youtube_id']}: q = {row['q']:.2f}, faults: {', '.join(faults) or 'none'}"
        png = plots.logmel_picture(logmel(decode(root / row["file"])), title)
        path = out / f"spectrogram_{name}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def run(cfg: Config, store: LocalStore, *, tracks: int = 200, seed: int = 7, workers: int | None = None,
        artists: int = 0) -> Summary:
    """The demo-corpus stage: synthesise the tracks not yet written into the folder of
    ``store`` (one per core, or on the configured executor), then write ``truth.csv`` and
    ``dataset.csv``. ``artists``: that many artists (module docstring), 0 for none. Failures
    go to ``failures/demo-corpus.jsonl`` in the folder."""
    if tracks < 1:
        raise InputError(f"--tracks must be at least 1 (got {tracks})")
    if artists < 0:
        raise InputError(f"--artists must be 0 (none) or more (got {artists})")
    out = store.root
    (out / "tracks").mkdir(parents=True, exist_ok=True)
    (out / "by-id").mkdir(exist_ok=True)
    corpus = draw_corpus(seed, tracks, artists)
    todo = [t for t in corpus
            if not (out / "tracks" / t.filename).exists() or not (out / "by-id" / t.youtube_id).is_symlink()]
    failures = FailureLog(store, STAGE)

    def outcome(_: CorpusTrack, result: str | BaseException) -> tuple[str | None, str]:
        if isinstance(result, BaseException):
            return type(result).__name__, str(result)
        return None, ""

    with make_executor(cfg, workers or default_workers(), store=store) as pool:
        summary = run_plan(STAGE, Plan(todo, {"already written": len(corpus) - len(todo)}), write_track, str(out),
                           executor=pool, outcome=outcome, item_id=lambda t: t.youtube_id, failures=failures)
    write_csv(truth_rows(corpus), out / "truth.csv")
    write_csv(dataset_rows(corpus, seed), out / "dataset.csv")
    summary.extra["corpus"] = str(out)
    return summary
