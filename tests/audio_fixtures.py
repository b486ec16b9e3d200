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
               silent: bool = False, extra: list[str] | None = None) -> Path:
    """Write ``seconds`` of audio to ``path`` (format from its suffix) and return ``path``."""
    if silent:
        src = f"anullsrc=r={sr}:cl={'mono' if channels == 1 else 'stereo'}"
    else:
        tones = "+".join(f"0.15*sin(2*PI*{f:.2f}*t)" for f in (freq, freq * 1.25, freq * 1.5, freq * 2.01))
        src = f"aevalsrc='({tones})*(0.6+0.4*sin(2*PI*0.5*t))|({tones})*(0.6+0.4*cos(2*PI*0.5*t))':s={sr}:d={seconds}"
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-t", str(seconds), "-i", src]
    if not silent:
        cmd += ["-f", "lavfi", "-t", str(seconds), "-i", f"anoisesrc=c=pink:a=0.02:r={sr}",
                "-filter_complex", "[0][1]amix=inputs=2:normalize=0"]
    cmd += ["-ac", str(channels), "-ar", str(sr), *CODECS[path.suffix], *(extra or []), str(path)]
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=True, capture_output=True)
    return path
