"""Electronic-music synthesis with numpy, for the demo corpus (pure functions).

A track is drums (kick, clap, closed and open hats), a bass line, chords and a stepwise lead
line on a 16th-note grid at the track's tempo, in one key (major or natural minor), arranged in
8-bar sections. :func:`render` turns a :class:`TrackSpec` into stereo float32 samples at
44,100 Hz; the same spec always gives the same samples.

Production faults (:class:`Faults`, each a strength in 0..1, 0 = absent) are what a
listener would call worse. The two that carry a track's quality in the demo corpus are
musical, and **local and structural**: they change the order and placement of notes, not the
colour of the sound, so statistics over frames (per-band means and deviations, MFCC, spectral
contrast and chroma means and deviations, onset strength, tempo stability) barely move:

- ``pitch``: the lead's notes played in the wrong order in a share ``pitch`` of the bars
  (:func:`scramble`): the same notes, rhythm and envelopes, so the same pitch classes, timbre
  and onsets, but the line's smooth stepwise runs become leaps;
- ``timing``: the lead's notes jittered off the grid (σ up to 12 ms, about half a
  spectrogram frame; the drums, bass and chords stay on the grid, so the tempo is intact);

and three spectral faults, which the demo corpus draws independently of quality:

- ``clipping``: the master driven up to 18 dB into a hard clipper;
- ``muddy``: the master low-passed after that (cutoff from 9 kHz down to 1 kHz);
- ``hiss``: white noise added last, at a signal-to-noise ratio from 40 dB down to 12 dB.

Besides the faults, every track varies in ways that are not faults (brightness of the
instruments, hats level and pattern, part levels, loudness), so no single spectral cue
tells a clean track from a faulty one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import signal

SR = 44100
STEPS_PER_BAR = 16
SECTION_BARS = 8
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 3), (5, 3, 0, 4), (0, 4, 5, 3), (0, 6, 5, 4), (0, 2, 3, 4))
FAULTS = ("timing", "pitch", "clipping", "muddy", "hiss")


@dataclass(frozen=True)
class Faults:
    """Strengths of the production faults, each 0..1 (0 = absent)."""

    timing: float = 0.0
    pitch: float = 0.0
    clipping: float = 0.0
    muddy: float = 0.0
    hiss: float = 0.0

    def present(self) -> list[str]:
        """Names of the faults with a non-zero strength."""
        return [name for name in FAULTS if getattr(self, name) > 0]


@dataclass(frozen=True)
class TrackSpec:
    """Everything that decides a track's samples.

    ``duration`` in seconds, ``bpm`` in beats per minute, ``root`` the MIDI note of the key's
    tonic (its bass octave), ``brightness`` 0..1 (instrument filter cutoffs), ``level_db`` the
    mix's RMS in dBFS before any clipping; ``seed`` drives every random choice of the music.
    """

    seed: int
    duration: float
    bpm: float
    root: int
    mode: str
    brightness: float
    level_db: float
    faults: Faults = field(default_factory=Faults)

    @property
    def key(self) -> str:
        names = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
        return f"{names[self.root % 12]} {self.mode}"


def midi_hz(note: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz of MIDI note numbers (A4 = 69 = 440 Hz)."""
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


# --- drum one-shots (mono float32) ---------------------------------------------------------

def kick(rng: np.random.Generator) -> np.ndarray:
    """A sine kick: pitch sweeping from ~150 Hz to ~48 Hz, 0.35 s, with a short click."""
    t = np.arange(int(0.35 * SR), dtype=np.float32) / SR
    f0, f1 = rng.uniform(130, 170), rng.uniform(42, 55)
    freq = f1 + (f0 - f1) * np.exp(-t / 0.03)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    body = np.sin(phase) * np.exp(-t / rng.uniform(0.12, 0.2))
    click = rng.standard_normal(t.size).astype(np.float32) * np.exp(-t / 0.002) * 0.3
    return (body + click).astype(np.float32)


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    return signal.sosfilt(butter_sos(2, (lo, min(hi, 0.45 * SR)), "band"), rng.standard_normal(n)).astype(np.float32)


def clap(rng: np.random.Generator) -> np.ndarray:
    """A clap/snare: band-passed noise (1–6 kHz) with three quick bursts and a 190 Hz body."""
    t = np.arange(int(0.3 * SR), dtype=np.float32) / SR
    env = sum(np.exp(-np.maximum(t - d, 0) / 0.008) * (t >= d) for d in (0.0, 0.011, 0.022))
    tail = np.exp(-t / rng.uniform(0.08, 0.16))
    noise = _band_noise(rng, t.size, 1000, rng.uniform(4000, 8000))
    body = np.sin(2 * np.pi * 190 * t) * np.exp(-t / 0.05) * 0.3
    out = noise * (0.6 * env + 0.5 * tail) + body
    return (out / np.abs(out).max()).astype(np.float32)


def hat(rng: np.random.Generator, decay: float) -> np.ndarray:
    """A hat: high-passed noise (from 6–8 kHz) decaying over ``decay`` seconds."""
    t = np.arange(int(4 * decay * SR), dtype=np.float32) / SR
    noise = signal.sosfilt(butter_sos(2, round(rng.uniform(6000, 8000)), "high"),
                           rng.standard_normal(t.size)).astype(np.float32)
    out = noise * np.exp(-t / decay)
    return (out / np.abs(out).max()).astype(np.float32)


def place(buf: np.ndarray, sample: np.ndarray, onsets: np.ndarray, gains: np.ndarray) -> None:
    """Add ``sample`` × gain into ``buf`` (shape ``(n,)``) at each onset (sample indices)."""
    n = buf.size
    for start, gain in zip(onsets.tolist(), gains.tolist(), strict=True):
        if 0 <= start < n:
            stop = min(n, start + sample.size)
            buf[start:stop] += gain * sample[: stop - start]


# --- pitched voices --------------------------------------------------------------------------

def note(length: int, hz: float, *, wave: str, decay: float, release: float, cutoff: float) -> np.ndarray:
    """One synthesised note, float32 shape ``(length + release,)`` in samples.

    The envelope is a 5-ms attack, an exponential decay of ``decay`` seconds and a linear
    release of ``release`` seconds after ``length``; ``wave`` is ``"saw"``, ``"square"`` or
    ``"sine"``, low-passed at ``cutoff`` Hz.
    """
    t = np.arange(length + int(release * SR), dtype=np.float32) / np.float32(SR)
    env = np.minimum(t / np.float32(0.005), 1) * np.exp(-t / np.float32(decay))
    env *= np.clip((np.float32(length / SR + release) - t) / np.float32(release), 0, 1)
    phase = t * np.float32(hz)
    phase -= np.floor(phase)
    if wave == "saw":
        osc = 2 * phase - 1
    elif wave == "square":
        osc = np.where(phase < 0.5, np.float32(1), np.float32(-1))
    else:
        osc = np.sin(np.float32(2 * np.pi) * phase)
    return lowpass(osc * env, cutoff)


def voice(n: int, onsets: np.ndarray, lengths: np.ndarray, freqs: np.ndarray, gain: float,
          **timbre: Any) -> np.ndarray:
    """Notes added into a silent buffer, float32 shape ``(n,)``.

    ``onsets``/``lengths`` in samples, ``freqs`` in Hz, ``gain`` linear; ``timbre`` goes to
    :func:`note`. Identical notes are synthesised once (a track repeats its notes a lot).
    """
    out = np.zeros(n, dtype=np.float32)
    cache: dict[tuple[float, int], np.ndarray] = {}
    for start, length, hz in zip(onsets.tolist(), lengths.tolist(), freqs.tolist(), strict=True):
        key = (round(hz, 3), length)
        if key not in cache:
            cache[key] = note(length, hz, **timbre) * np.float32(gain)
        if 0 <= start < n:
            stop = min(n, start + cache[key].size)
            out[start:stop] += cache[key][: stop - start]
    return out


@lru_cache(maxsize=512)
def butter_sos(order: int, cutoff: float | tuple[float, float], btype: str) -> np.ndarray:
    """A Butterworth filter design (second-order sections) at 44,100 Hz, cached."""
    return signal.butter(order, cutoff, btype=btype, fs=SR, output="sos")


def lowpass(x: np.ndarray, cutoff: float, order: int = 2) -> np.ndarray:
    """Butterworth low-pass along the last axis (``cutoff`` in Hz), float32."""
    return signal.sosfilt(butter_sos(order, round(min(cutoff, 0.45 * SR), 1), "low"), x, axis=-1).astype(np.float32)


# --- the track ----------------------------------------------------------------------------

def arrangement(rng: np.random.Generator, bars: int) -> dict[str, np.ndarray]:
    """Which parts play in each bar: boolean arrays of shape ``(bars,)`` per part.

    The first section is an intro (hats and chords), then full sections and breakdowns
    (no kick, no bass); the lead (:func:`_lead`) plays in every bar.
    """
    parts = ("kick", "clap", "hats", "bass", "chords")
    on = {p: np.zeros(bars, dtype=bool) for p in parts}
    for s, start in enumerate(range(0, bars, SECTION_BARS)):
        sl = slice(start, start + SECTION_BARS)
        kind = "intro" if s == 0 else rng.choice(["full", "full", "full", "breakdown"])
        playing = {"intro": ("hats", "chords", "kick"), "breakdown": ("chords", "hats"),
                   "full": ("kick", "clap", "hats", "bass", "chords")}[kind]
        for p in playing:
            on[p][sl] = True
    return on


def _steps_to_seconds(bars: np.ndarray, steps: np.ndarray, step_s: float) -> np.ndarray:
    return (bars * STEPS_PER_BAR + steps) * step_s


def _grid(on: np.ndarray, pattern: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(bar, step) of every hit of a one-bar pattern in the bars where the part plays."""
    bars = np.flatnonzero(on)
    b, s = np.meshgrid(bars, np.asarray(pattern, dtype=np.int64), indexing="ij")
    return b.ravel(), s.ravel()


@dataclass
class _Track:
    """What the parts of one track share while it is rendered: its random generator (drawn
    from in a fixed order, so a spec always gives the same samples), length ``n`` in samples,
    16th-note step in seconds, the arrangement, the filter-cutoff factor and the stereo buses
    (float32 ``(n,)`` each)."""

    spec: TrackSpec
    rng: np.random.Generator
    n: int
    step_s: float
    bars: int
    on: dict[str, np.ndarray]
    bright: float
    left: np.ndarray
    right: np.ndarray
    centre: np.ndarray

    @classmethod
    def start(cls, spec: TrackSpec) -> _Track:
        rng = np.random.default_rng(spec.seed)
        n = round(spec.duration * SR)
        step_s = 60.0 / spec.bpm / 4
        bars = int(np.ceil(spec.duration / (step_s * STEPS_PER_BAR)))
        on = arrangement(rng, bars)
        bright = 2.0 ** (2.0 * spec.brightness - 1.0)  # × filter cutoffs, 0.5..2
        return cls(spec, rng, n, step_s, bars, on, bright, *(np.zeros(n, dtype=np.float32) for _ in range(3)))

    def onsets(self, seconds: np.ndarray) -> np.ndarray:
        """Sample positions of event times, with a natural 2-ms jitter (the same at any q)."""
        t = seconds + self.rng.normal(0.0, 0.002, seconds.size)
        return np.maximum(np.round(t * SR), 0).astype(np.int64)

    def grid_onsets(self, b: np.ndarray, s: np.ndarray) -> np.ndarray:
        """:meth:`onsets` of (bar, step) positions."""
        return self.onsets(_steps_to_seconds(b, s, self.step_s))


@dataclass
class _Harmony:
    """The track's key and 4-chord progression (one chord a bar)."""

    track: _Track
    scale: np.ndarray
    chord_of_bar: np.ndarray   # scale degree of each bar's chord root, (bars,)

    @classmethod
    def start(cls, t: _Track) -> _Harmony:
        degrees = np.asarray(PROGRESSIONS[t.rng.integers(len(PROGRESSIONS))])
        return cls(t, np.asarray(SCALES[t.spec.mode]), degrees[np.arange(t.bars) % 4])

    def scale_note(self, degree: np.ndarray, octave_base: int) -> np.ndarray:
        """MIDI notes of scale degrees (any integer: 7 is the next octave's tonic)."""
        degree = np.asarray(degree)
        return octave_base + 12 * (degree // 7) + self.scale[degree % 7]


def render(spec: TrackSpec) -> np.ndarray:
    """Synthesise the track: float32 stereo samples, shape ``(n, 2)``, n = duration × 44,100."""
    t = _Track.start(spec)
    _drums(t)
    harmony = _Harmony.start(t)
    _bass(t, harmony)
    _chords(t, harmony)
    _lead(t, harmony)
    mix = np.stack([t.left + t.centre, t.right + t.centre])  # (2, n)
    return master(mix, spec, t.rng).T.copy()


def _drums(t: _Track) -> None:
    """Kick and clap in the centre; closed (and sometimes open) hats panned."""
    rng, on, n = t.rng, t.on, t.n
    b, s = _grid(on["kick"], [0, 4, 8, 12] + ([14] if rng.random() < 0.3 else []))
    place(t.centre, kick(rng), t.grid_onsets(b, s), np.where(s == 14, 0.6, 1.0) * 0.9)
    b, s = _grid(on["clap"], [4, 12])
    place(t.centre, clap(rng), t.grid_onsets(b, s), np.full(b.size, 0.45))
    hat_db = rng.uniform(-10, 0)
    busy = rng.random() < 0.5
    b, s = _grid(on["hats"], list(range(16)) if busy else [2, 6, 10, 14])
    vel = np.where(s % 4 == 2, 1.0, 0.45) * 10 ** (hat_db / 20) * 0.3
    hat_l = np.zeros(n, dtype=np.float32)
    place(hat_l, hat(rng, rng.uniform(0.015, 0.04)), t.grid_onsets(b, s), vel)
    if rng.random() < 0.6:
        b, s = _grid(on["hats"] & on["clap"], [2, 6, 10, 14])
        place(hat_l, hat(rng, rng.uniform(0.08, 0.15)), t.grid_onsets(b, s),
              np.full(b.size, 0.5 * 10 ** (hat_db / 20) * 0.3))
    pan = rng.uniform(0.2, 0.4)
    t.left += (1 - pan) * hat_l
    t.right += (1 + pan) * hat_l * 0.8


def _bass(t: _Track, h: _Harmony) -> None:
    """A per-track one-bar rhythm on the chord's root (sometimes its fifth or octave), centre."""
    rng, step_s = t.rng, t.step_s
    bass_steps = sorted(rng.choice(16, size=rng.integers(4, 9), replace=False).tolist())
    if 0 not in bass_steps and rng.random() < 0.5:
        bass_steps = [0, *bass_steps]
    b, s = _grid(t.on["bass"], bass_steps)
    offs = rng.choice([0, 0, 0, 4, 7], size=len(bass_steps))  # root, fifth (4 scale steps up), octave
    deg = h.chord_of_bar[b] + np.tile(offs, b.size // max(len(bass_steps), 1))
    notes = h.scale_note(deg, t.spec.root)
    grid = _steps_to_seconds(b, s, step_s)
    gaps = np.diff(grid, append=grid[-1] + step_s) if grid.size else grid  # to the next note, s
    lengths = np.round(np.minimum(gaps, 1.5 * step_s) * SR).astype(np.int64)
    wave = rng.choice(["saw", "square"])
    t.centre += voice(t.n, t.onsets(grid), lengths, midi_hz(notes), 0.5,
                      wave=wave, decay=0.25, release=0.01, cutoff=300 * t.bright + 200)


def _chords(t: _Track, h: _Harmony) -> None:
    """Triads one octave above the bass, a bar long, detuned left/right for width."""
    bars_on = np.flatnonzero(t.on["chords"])
    if not bars_on.size:
        return
    bar_s = t.step_s * STEPS_PER_BAR
    ons = np.round(bars_on * bar_s * SR).astype(np.int64)
    length = int(bar_s * SR) - 200
    wave = t.rng.choice(["saw", "square"])
    for tone in (0, 2, 4):
        hz = midi_hz(h.scale_note(h.chord_of_bar[bars_on] + tone, t.spec.root + 12))
        for side, cents in ((t.left, 6), (t.right, -6)):
            side += voice(t.n, ons, np.full(bars_on.size, length), hz * 2 ** (cents / 1200), 0.12,
                          wave=wave, decay=2.0, release=0.05, cutoff=1200 * t.bright)


LEAD_NOTES = 8  # eighth notes a bar
LEAD_RANGE = 12  # scale degrees the line moves within (from the key's tonic three octaves up)


def lead_line(rng: np.random.Generator, bars: int) -> np.ndarray:
    """The lead's scale degrees, one per eighth note, shape ``(bars, LEAD_NOTES)``: a two-bar
    phrase repeated, moving by single scale steps in runs (it keeps its direction, turning with
    probability 0.05 a note and at the edges of :data:`LEAD_RANGE`), so it draws smooth
    diagonal lines in a spectrogram."""
    phrase = np.empty(2 * LEAD_NOTES, dtype=np.int64)
    d, direction = int(rng.integers(2, LEAD_RANGE - 2)), int(rng.choice([-1, 1]))
    for i in range(phrase.size):
        phrase[i] = d
        if rng.random() < 0.05 or not 0 <= d + direction < LEAD_RANGE:
            direction = -direction
        d += direction
    return np.resize(phrase, bars * LEAD_NOTES).reshape(bars, LEAD_NOTES)


def scramble(rng: np.random.Generator, line: np.ndarray, share: float) -> np.ndarray:
    """The pitch fault: in a share ``share`` of the bars (at random) the line's notes are played
    in a random order. Each bar keeps its notes, its rhythm and its envelopes (so the pitch
    classes, the timbre and the onsets are those of the clean line: statistics over frames see
    the same thing); only the contour is lost: steps become leaps."""
    out = line.copy()
    for b in np.flatnonzero(rng.random(line.shape[0]) < share):
        out[b] = out[b, rng.permutation(line.shape[1])]
        if np.array_equal(out[b], line[b]):
            out[b] = out[b, ::-1]
    return out


def _lead(t: _Track, h: _Harmony) -> None:
    """A stepwise line of eighth notes (:func:`lead_line`) in every bar, moved with the chord,
    panned. The faults come from their own generator, so a faulty track plays the same music:
    ``pitch`` scrambles the notes of a share of the bars (:func:`scramble`), ``timing``
    jitters the line's notes off the grid (σ up to 12 ms)."""
    rng = t.rng
    line = lead_line(rng, t.bars)
    wave = rng.choice(["saw", "square", "sine"])
    lp = rng.uniform(-0.3, 0.3)
    fault_rng = np.random.default_rng([t.spec.seed, 13])
    line = scramble(fault_rng, line, t.spec.faults.pitch)
    b = np.repeat(np.arange(t.bars), LEAD_NOTES)
    s = np.tile(np.arange(LEAD_NOTES) * (STEPS_PER_BAR // LEAD_NOTES), t.bars)
    notes = h.scale_note(line.ravel() + h.chord_of_bar[b] % 3, t.spec.root + 36)
    seconds = _steps_to_seconds(b, s, t.step_s)
    seconds = seconds + fault_rng.normal(0.0, 0.012 * t.spec.faults.timing, seconds.size)
    ons = np.maximum(np.round(seconds * SR), 0).astype(np.int64)
    lengths = np.full(b.size, int(t.step_s * SR * 1.8))
    lead = voice(t.n, ons, lengths, midi_hz(notes), 0.3,
                 wave=wave, decay=0.4, release=0.02, cutoff=2000 + 3000 * t.bright)
    t.left += (1 - lp) * lead
    t.right += (1 + lp) * lead


def master(mix: np.ndarray, spec: TrackSpec, rng: np.random.Generator) -> np.ndarray:
    """The master chain: level, then the faults in the order they would happen (drive into a
    hard clip, a muddy low-pass, hiss on top), and a 2-s fade-out.

    ``mix``: float32 ``(2, n)``; returns float32 ``(2, n)`` within [-0.98, 0.98].
    """
    f = spec.faults
    mix = mix * np.float32(10 ** (spec.level_db / 20) / (float(np.sqrt(np.mean(mix**2))) + 1e-9))
    peak = float(np.abs(mix).max())
    if peak > 0.98:  # a clean master never clips: the level gives way
        mix *= np.float32(0.98 / peak)
    if f.clipping > 0:
        mix = np.clip(mix * np.float32(10 ** ((3 + 15 * f.clipping) / 20)), -0.98, 0.98)
    if f.muddy > 0:
        mix = lowpass(mix, 9000 * (1000 / 9000) ** f.muddy, order=4)
    if f.hiss > 0:
        rms = float(np.sqrt(np.mean(mix**2)))
        mix = mix + (rng.standard_normal(mix.shape, dtype=np.float32)
                     * np.float32(rms * 10 ** (-(40 - 28 * f.hiss) / 20)))
    peak = float(np.abs(mix).max())
    if peak > 0.98:
        mix *= np.float32(0.98 / peak)
    n = mix.shape[1]
    fade = min(n, 2 * SR)
    mix[:, n - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return mix.astype(np.float32)
