"""Real audio for tests, made by the real ffmpeg (the imageio-ffmpeg binary).

The signal is music-like rather than a pure tone: a chord of sines with a slow tremolo
plus a little pink noise, so that spectra are broadband and codecs behave as on music.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from deepcurator.audio import ffmpeg_exe
from deepcurator.demo.media import CODECS, make_audio

__all__ = ["CODECS", "add_cover_art", "make_audio", "make_multichannel"]


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
