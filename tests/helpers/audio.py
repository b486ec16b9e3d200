"""Real audio for tests, made by the real ffmpeg (the imageio-ffmpeg binary).

The signal is music-like rather than a pure tone: a chord of sines with a slow tremolo
plus a little pink noise, so that spectra are broadband and codecs behave as on music.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from deepcurator.audio import ffmpeg_exe

CODECS = {
    ".mp3": ["-c:a", "libmp3lame", "-b:a", "128k"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "4"],
    ".flac": ["-c:a", "flac"],
    ".wav": ["-c:a", "pcm_s16le"],
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
}


def make_audio(path: Path, seconds: float, sr: int = 44100, channels: int = 2, freq: float = 220.0,
               silent: bool = False, extra: list[str] | None = None, noise: str = "pink", seed: int = 0) -> Path:
    """Write ``seconds`` of audio to ``path`` (format from its suffix) and return ``path``: a
    four-note chord on ``freq`` over ``noise``-coloured noise (ffmpeg's anoisesrc colours),
    the same samples for the same ``seed``."""
    if silent:
        src = f"anullsrc=r={sr}:cl={'mono' if channels == 1 else 'stereo'}"
    else:
        tones = "+".join(f"0.15*sin(2*PI*{f:.2f}*t)" for f in (freq, freq * 1.25, freq * 1.5, freq * 2.01))
        src = f"aevalsrc='({tones})*(0.6+0.4*sin(2*PI*0.5*t))|({tones})*(0.6+0.4*cos(2*PI*0.5*t))':s={sr}:d={seconds}"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-t", str(seconds),
           "-i", src]
    if not silent:
        cmd += ["-f", "lavfi", "-t", str(seconds), "-i", f"anoisesrc=c={noise}:a=0.02:r={sr}:seed={seed}",
                "-filter_complex", "[0][1]amix=inputs=2:normalize=0"]
    cmd += ["-ac", str(channels), "-ar", str(sr), *CODECS[path.suffix], *(extra or []), str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True)
    return path


LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 6: "5.1", 8: "7.1"}


def make_multichannel(path: Path, seconds: float, channels: int, sr: int = 48000) -> Path:
    """Write ``seconds`` of audio with a different chord and level on every channel (ffmpeg's
    standard layout for ``channels``: 5.1 for 6, ...), so a downmix can be checked channel by
    channel. The format comes from the suffix."""
    exprs = []
    for k in range(channels):
        f = 110.0 * (1.5 + 0.37 * k)
        tones = "+".join(f"sin(2*PI*{f * m:.2f}*t)" for m in (1.0, 1.25, 1.5))
        exprs.append(f"{0.05 + 0.03 * k:.2f}*({tones})/3*(0.7+0.3*sin(2*PI*{0.3 + 0.1 * k:.1f}*t))"
                     f"+0.01*(2*random({k})-1)")
    src = f"aevalsrc='{'|'.join(exprs)}':s={sr}:d={seconds}:c={LAYOUTS[channels]}"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src,
           *CODECS[path.suffix], str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def add_cover_art(src: Path, dest: Path) -> Path:
    """Copy the mp3 ``src`` to ``dest`` with an ID3v2 tag: a title and a PNG front cover
    (an attached-picture video stream, as taggers write it)."""
    cover = dest.with_suffix(".cover.png")
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "color=c=orange:s=300x300", "-frames:v", "1", str(cover)], check=True, capture_output=True)
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
                    "-i", str(cover), "-map", "0:a", "-map", "1:v", "-c:a", "copy", "-c:v", "png",
                    "-disposition:v", "attached_pic", "-id3v2_version", "3", "-metadata", "title=Fixture",
                    "-metadata:s:v", "comment=Cover (front)", str(dest)], check=True, capture_output=True)
    cover.unlink()
    return dest
